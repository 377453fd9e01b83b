package cache

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/golang/mock/gomock"
	"go.uber.org/goleak"

	"github.com/temporal-kms/kmscodec/kms/kmstest"
	"github.com/temporal-kms/kmscodec/mocks"
)

// Every test in this package must leave no goroutine behind: the caches
// start none of their own, and a KMS call that times out must not strand
// the goroutines waiting on it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Callers waiting on one KMS call that hangs until its timeout all return
// with the timeout, and nothing of the call outlives it.
func TestTimedOutKMSCallsLeaveNoGoroutineBehind(t *testing.T) {
	defer goleak.VerifyNone(t)
	m := mocks.NewMockAPI(gomock.NewController(t))
	hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	m.EXPECT().GenerateDataKey(gomock.Any(), gomock.Any()).DoAndReturn(
		func(ctx context.Context, _ *awskms.GenerateDataKeyInput, _ ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
			return nil, hang(ctx)
		}).MinTimes(1)
	m.EXPECT().Decrypt(gomock.Any(), gomock.Any()).DoAndReturn(
		func(ctx context.Context, _ *awskms.DecryptInput, _ ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
			return nil, hang(ctx)
		}).MinTimes(1)
	m.EXPECT().DescribeKey(gomock.Any(), gomock.Any()).DoAndReturn(
		func(ctx context.Context, _ *awskms.DescribeKeyInput, _ ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error) {
			return nil, hang(ctx)
		}).MinTimes(1)

	const timeout = 20 * time.Millisecond
	enc, _ := NewEncryptionKeys(m, EncryptionOptions{Timeout: timeout}, identity)
	dec, _ := NewDecryptionKeys(m, DecryptionOptions{Timeout: timeout})
	res, _ := NewKeyResolver(m, "alias/k", ResolverOptions{TTL: time.Minute, Timeout: timeout})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, _, err := enc.Get(NewScope("alias/k", nil), 1); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("GenerateDataKey: got %v, want the timeout", err)
			}
		})
		wg.Go(func() {
			if _, err := dec.Get(WrappedKey{Identity: "x", KeyARN: keyARN, Blob: []byte("b"), EncryptionContext: noContext}); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Decrypt: got %v, want the timeout", err)
			}
		})
		wg.Go(func() {
			if _, err := res.ARN(); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("DescribeKey: got %v, want the timeout", err)
			}
		})
	}
	wg.Wait()
}

// Caches that are used and dropped leave nothing running: there is no
// janitor goroutine to stop.
func TestCachesNeedNoCloseToLeaveNoGoroutineBehind(t *testing.T) {
	defer goleak.VerifyNone(t)
	fake := kmstest.New()
	arn := fake.CreateKey()
	for range 10 {
		enc, _ := NewEncryptionKeys(fake, EncryptionOptions{MaxPayloads: 2}, identity)
		dec, _ := NewDecryptionKeys(fake, DecryptionOptions{Size: 2, TTL: time.Millisecond})
		res, _ := NewKeyResolver(fake, arn, ResolverOptions{TTL: time.Millisecond})
		for range 5 {
			if _, _, err := enc.Get(NewScope(arn, nil), 1); err != nil {
				t.Fatal(err)
			}
			w, _ := wrapped(t, fake, arn, nil)
			if _, err := dec.Get(w); err != nil {
				t.Fatal(err)
			}
			if _, err := res.ARN(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
