package cache

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// A reader that found a wrapped key's remembered refusal expired, and was
// overtaken by another reader that asked KMS again and got a fresh
// refusal, must take the fresh refusal instead of asking KMS a third
// time: a flood of payloads with one bogus wrapped key costs one Decrypt
// per negative interval however many readers share it.
//
// The interleaving is made deterministic through the clock: the first
// reader is held inside its expiry check while the second completes.
func TestARefusalRenewedWhileAReaderWaitsIsNotAskedForAgain(t *testing.T) {
	api := &fixedKeyKMS{reject: true}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var now atomic.Int64
	var hold atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	clock := func() time.Time {
		if hold.CompareAndSwap(true, false) {
			close(entered)
			<-release
		}
		return start.Add(time.Duration(now.Load()))
	}
	c, err := NewDecryptionKeys(api, DecryptionOptions{NegativeTTL: 10 * time.Second, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	w := WrappedKey{Identity: "bogus", KeyARN: keyARN, Blob: []byte("bogus"), EncryptionContext: noContext}
	isRefusal := func(err error) bool { return errors.As(err, new(*types.InvalidCiphertextException)) }

	if _, err := c.Get(w); !isRefusal(err) {
		t.Fatalf("got %v, want the refusal", err)
	}
	now.Store(int64(10 * time.Second)) // the refusal has expired

	hold.Store(true)
	first := make(chan error)
	go func() { _, err := c.Get(w); first <- err }()
	<-entered // the first reader has seen the expired refusal
	if _, err := c.Get(w); !isRefusal(err) {
		t.Fatalf("second reader: got %v, want the refusal", err)
	}
	close(release)
	if err := <-first; !isRefusal(err) {
		t.Fatalf("first reader: got %v, want the refusal", err)
	}
	if n := api.calls.Load(); n != 2 {
		t.Fatalf("%d Decrypt calls, want 2: one per negative interval", n)
	}
}
