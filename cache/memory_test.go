package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// fixedKeyKMS is the cheapest KMS there is: Decrypt unwraps every blob to
// the same 32-byte data key, or rejects every blob, and counts the calls.
// It lets a test push a million wrapped keys through a cache in seconds.
type fixedKeyKMS struct {
	reject bool
	calls  atomic.Int64
}

func (k *fixedKeyKMS) Decrypt(_ context.Context, in *awskms.DecryptInput, _ ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
	k.calls.Add(1)
	if k.reject {
		return nil, &types.InvalidCiphertextException{}
	}
	// A fresh buffer every time: the cache clears the one KMS returns.
	return &awskms.DecryptOutput{KeyId: in.KeyId, Plaintext: bytes.Repeat([]byte{7}, 32)}, nil
}

func (k *fixedKeyKMS) GenerateDataKey(context.Context, *awskms.GenerateDataKeyInput, ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
	return nil, errors.New("fixedKeyKMS: GenerateDataKey is not used")
}

func (k *fixedKeyKMS) DescribeKey(context.Context, *awskms.DescribeKeyInput, ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error) {
	return nil, errors.New("fixedKeyKMS: DescribeKey is not used")
}

// identitySize is the size of a realistic cache key: the additional data
// of an envelope with an AWS key ARN (75 bytes), an AWS wrapped data key
// (184 bytes) and a namespace context (about 50 bytes), with their length
// prefixes and the format name.
const identitySize = 15 + 4 + 75 + 4 + 184 + 4 + 50

// flood looks up n distinct wrapped keys, spread over one goroutine per
// CPU, each identity built on the fly so that the test itself keeps none
// of them.
func flood(t *testing.T, c *DecryptionKeys, n int, wantErr bool) {
	t.Helper()
	workers := runtime.GOMAXPROCS(0)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			identity := bytes.Repeat([]byte{'i'}, identitySize)
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				binary.BigEndian.PutUint64(identity[identitySize-8:], uint64(i))
				_, err := c.Get(WrappedKey{
					Identity:          string(identity),
					KeyARN:            keyARN,
					Blob:              identity[19+75+4 : 19+75+4+184],
					EncryptionContext: noContext,
				})
				if (err != nil) != wantErr {
					t.Errorf("key %d: error %v, want error: %v", i, err, wantErr)
					return
				}
			}
		})
	}
	wg.Wait()
}

// heapInUse returns the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// A worker that reads a million payloads under a million different data
// keys (a flood, or a very long replay) holds at most DecryptionOptions.Size
// of them: the cache's memory is bounded by its configuration, not by its
// input.
//
// The bound is computed from what one entry can cost: its identity and
// 32-byte data key, plus a generous 512 bytes for the LRU's list element,
// map slot and expiry time. Unbounded, the same flood would hold a
// million entries, over 35 times the bound.
func TestDecryptionCacheFloodedWithAMillionKeysStaysWithinItsCapacity(t *testing.T) {
	const (
		size     = 10_000
		keys     = 1_000_000
		perEntry = identitySize + 32 + 512
		bound    = size*perEntry + 1<<20 // and 1 MiB for the cache's fixed parts
	)
	api := &fixedKeyKMS{}
	before := heapInUse()
	c, err := NewDecryptionKeys(api, DecryptionOptions{Size: size})
	if err != nil {
		t.Fatal(err)
	}
	flood(t, c, keys, false)
	growth := heapInUse() - before
	runtime.KeepAlive(c)

	if c.held() != size {
		t.Errorf("cache holds %d data keys after %d distinct ones, want its capacity %d", c.held(), keys, size)
	}
	if n := api.calls.Load(); n != keys {
		t.Errorf("%d Decrypt calls for %d distinct data keys, want one each", n, keys)
	}
	t.Logf("heap growth after %d distinct data keys in a cache of %d: %d bytes (%d per held key); bound %d bytes",
		keys, size, growth, growth/size, int64(bound))
	if growth > bound {
		t.Fatalf("heap grew by %d bytes holding %d data keys, over the bound of %d", growth, size, int64(bound))
	}
	if unbounded := int64(keys) * (identitySize + 32); growth*10 > unbounded {
		t.Fatalf("heap grew by %d bytes, within a factor 10 of holding every key (%d bytes)", growth, unbounded)
	}
}

// KMS rejections are remembered so that a bad wrapped key costs one
// Decrypt per NegativeTTL, but a flood of distinct bad keys must not make
// that memory grow without bound either.
func TestNegativeCacheFloodedWithRejectedKeysStaysWithinItsCapacity(t *testing.T) {
	const (
		negativeSize = 1_024
		keys         = 100_000
		perEntry     = identitySize + 1024 // identity, the error chain and the LRU entry
		bound        = negativeSize*perEntry + 1<<20
	)
	api := &fixedKeyKMS{reject: true}
	before := heapInUse()
	c, err := NewDecryptionKeys(api, DecryptionOptions{NegativeSize: negativeSize, NegativeTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	flood(t, c, keys, true)
	growth := heapInUse() - before
	runtime.KeepAlive(c)

	if n := c.failures.Len(); n != negativeSize {
		t.Errorf("negative cache holds %d rejections after %d distinct ones, want its capacity %d", n, keys, negativeSize)
	}
	if c.held() != 0 {
		t.Errorf("%d data keys cached although KMS rejected every one", c.held())
	}
	t.Logf("heap growth after %d distinct rejected keys: %d bytes; bound %d bytes", keys, growth, int64(bound))
	if growth > bound {
		t.Fatalf("heap grew by %d bytes holding %d rejections, over the bound of %d", growth, negativeSize, int64(bound))
	}
}
