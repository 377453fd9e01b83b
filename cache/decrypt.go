package cache

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/temporal-kms/kmscodec/kms"
)

// DecryptionOptions bound the cache of unwrapped data keys. Zero values
// take the defaults given.
type DecryptionOptions struct {
	// Size is how many data keys the cache holds; the least recently used
	// goes first. Default 10,000.
	Size int
	// TTL is how long an unwrapped data key is kept. Default 1 hour.
	TTL time.Duration
	// NegativeSize is how many KMS rejections are remembered. Default 1,024.
	NegativeSize int
	// NegativeTTL is how long a KMS rejection of a wrapped key (invalid
	// ciphertext, access denied, disabled key) is remembered and returned
	// without asking KMS again. Throttling, KMS faults and timeouts are
	// never remembered. Default 10 seconds; negative turns it off.
	NegativeTTL time.Duration
	// Timeout bounds each KMS call. Default 5 seconds.
	Timeout time.Duration
	// Clock returns the current time. Default time.Now; tests set it.
	Clock func() time.Time
	// Record, if set, is called for every cache hit, miss and KMS call.
	Record func(Event)
}

func (o *DecryptionOptions) setDefaults() error {
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.NegativeSize == 0 {
		o.NegativeSize = DefaultNegativeSize
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = DefaultNegativeTTL
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	switch {
	case o.Size < 0, o.NegativeSize < 0:
		return errors.New("cache: sizes must not be negative")
	case o.TTL < 0:
		return errors.New("cache: TTL must not be negative")
	case o.Timeout < 0:
		return errors.New("cache: Timeout must not be negative")
	}
	return nil
}

// WrappedKey is a data key as a payload names it, to be unwrapped by KMS.
type WrappedKey struct {
	// Identity is equal for two wrapped keys exactly when KeyARN, Blob and
	// the context are; it is the cache key.
	Identity string
	// KeyARN is the ARN of the master key that wrapped the data key.
	KeyARN string
	// Blob is the CiphertextBlob.
	Blob []byte
	// EncryptionContext returns the context to pass to KMS. It is called
	// only on a cache miss, so its parsing cost is paid once per data key.
	EncryptionContext func() (map[string]string, error)
}

// DecryptionKeys holds unwrapped data keys, and calls KMS Decrypt for a
// wrapped key it does not hold.
type DecryptionKeys struct {
	api      kms.API
	opts     DecryptionOptions
	keys     *lru.Cache[string, *decryptedKey]
	failures *lru.Cache[string, failure]
	flight   singleflight.Group
}

type decryptedKey struct {
	plaintext []byte
	expires   time.Time
	// touched is when the key last moved to the front of the LRU order,
	// in Unix nanoseconds.
	touched atomic.Int64
}

// touchInterval is how often a key that keeps being used moves to the
// front of the LRU order. Moving it takes the cache's exclusive lock, and
// every decode on every core would queue for it if each hit moved its
// key; a hit in between takes a shared lock only. A key in use thus ranks
// at most this much staler than it is, which only matters to a cache so
// small that it evicts keys used within the last second.
const touchInterval = time.Second

func (c *DecryptionKeys) newEntry(plaintext []byte) *decryptedKey {
	now := c.opts.Clock()
	k := &decryptedKey{plaintext: plaintext, expires: now.Add(c.opts.TTL)}
	k.touched.Store(now.UnixNano())
	return k
}

type failure struct {
	err     error
	expires time.Time
}

// NewDecryptionKeys returns an empty cache that unwraps data keys with api.
func NewDecryptionKeys(api kms.API, opts DecryptionOptions) (*DecryptionKeys, error) {
	if api == nil {
		return nil, errors.New("cache: KMS client is nil")
	}
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	keys, err := lru.New[string, *decryptedKey](opts.Size)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	failures, err := lru.New[string, failure](opts.NegativeSize)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return &DecryptionKeys{api: api, opts: opts, keys: keys, failures: failures}, nil
}

// Get returns the plaintext data key of w, from the cache or from KMS.
// The caller must not modify it.
func (c *DecryptionKeys) Get(w WrappedKey) ([]byte, error) {
	id := w.Identity
	if k, ok := c.lookup(id); ok {
		record(c.opts.Record, DecryptHit)
		return k, nil
	}
	record(c.opts.Record, DecryptMiss)
	if f, ok := c.failures.Get(id); ok && c.opts.Clock().Before(f.expires) {
		record(c.opts.Record, NegativeHit)
		return nil, f.err
	}
	v, err, _ := c.flight.Do(id, func() (any, error) {
		if k, ok := c.lookup(id); ok { // filled by a flight that just ended
			return k, nil
		}
		// A flight that just ended may have been refused; do not ask again.
		if f, ok := c.failures.Get(id); ok && c.opts.Clock().Before(f.expires) {
			return nil, f.err
		}
		k, err := c.unwrap(w)
		if err != nil {
			var kmsErr *KMSError
			if c.opts.NegativeTTL > 0 && errors.As(err, &kmsErr) && !kmsErr.Transient() {
				c.failures.Add(id, failure{err: err, expires: c.opts.Clock().Add(c.opts.NegativeTTL)})
			}
			return nil, err
		}
		c.keys.Add(id, c.newEntry(k))
		c.failures.Remove(id)
		return k, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// Cached returns the plaintext data key of identity if the cache holds
// it, and counts a hit; it counts nothing on a miss, which the caller
// follows with Get. It is Get's fast path for a caller whose WrappedKey
// costs something to build. The caller must not modify the key.
func (c *DecryptionKeys) Cached(identity string) ([]byte, bool) {
	k, ok := c.lookup(identity)
	if ok {
		record(c.opts.Record, DecryptHit)
	}
	return k, ok
}

// Add puts a data key the caller already has in plaintext (one it just
// generated) into the cache, so reading back its own payloads costs no
// KMS call. plaintext is copied.
func (c *DecryptionKeys) Add(identity string, plaintext []byte) {
	c.keys.Add(identity, c.newEntry(bytes.Clone(plaintext)))
}

// held reports how many data keys the cache holds, expired ones included
// until they are looked up or evicted.
func (c *DecryptionKeys) held() int {
	return c.keys.Len()
}

func (c *DecryptionKeys) lookup(id string) ([]byte, bool) {
	k, ok := c.keys.Peek(id) // a shared lock: hits on several cores run side by side
	if !ok {
		return nil, false
	}
	now := c.opts.Clock()
	if !now.Before(k.expires) {
		c.keys.Remove(id)
		return nil, false
	}
	if t := k.touched.Load(); now.UnixNano()-t >= int64(touchInterval) && k.touched.CompareAndSwap(t, now.UnixNano()) {
		c.keys.Get(id) // move it to the front
	}
	return k.plaintext, true
}

func (c *DecryptionKeys) unwrap(w WrappedKey) ([]byte, error) {
	encryptionContext, err := w.EncryptionContext()
	if err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(c.opts.Timeout)
	defer cancel()
	record(c.opts.Record, DecryptCall)
	out, err := c.api.Decrypt(ctx, &awskms.DecryptInput{
		// Naming the key makes KMS refuse a wrapped key of any other key,
		// rather than trusting the payload's claim.
		KeyId:             aws.String(w.KeyARN),
		CiphertextBlob:    w.Blob,
		EncryptionContext: encryptionContext,
	})
	if err == nil {
		err = checkDecrypted(out, w.KeyARN)
	}
	if err != nil {
		record(c.opts.Record, KMSFailure)
		return nil, &KMSError{Op: "Decrypt", KeyID: w.KeyARN, Err: err}
	}
	k := bytes.Clone(out.Plaintext)
	clear(out.Plaintext)
	return k, nil
}

func checkDecrypted(out *awskms.DecryptOutput, keyARN string) error {
	switch {
	case out == nil:
		return fmt.Errorf("%w: no output", ErrInvalidResponse)
	case aws.ToString(out.KeyId) != keyARN:
		return fmt.Errorf("%w: decrypted with key %q, not the payload's key", ErrInvalidResponse, aws.ToString(out.KeyId))
	case len(out.Plaintext) != 32:
		return fmt.Errorf("%w: plaintext data key is %d bytes, want 32", ErrInvalidResponse, len(out.Plaintext))
	}
	return nil
}
