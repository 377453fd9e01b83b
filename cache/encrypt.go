package cache

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"golang.org/x/sync/singleflight"

	"github.com/temporal-kms/kmscodec/kms"
)

// EncryptionOptions are the reuse limits of data keys for encryption.
// Zero values take the defaults given.
type EncryptionOptions struct {
	// MaxAge is how long a data key is used after KMS generated it.
	// Default 5 minutes.
	MaxAge time.Duration
	// MaxPayloads is how many payloads one data key seals. Default 10,000;
	// 1 generates a data key for every payload.
	MaxPayloads int64
	// MaxBytes bounds the payload bytes one data key seals; 0, the
	// default, sets no bound. A payload larger than MaxBytes still gets a
	// data key of its own.
	MaxBytes int64
	// MaxScopes bounds how many scopes (master key and encryption context
	// pairs, in practice one per namespace) hold a data key at once.
	// Default 1,024.
	MaxScopes int
	// Timeout bounds each KMS call. Default 5 seconds.
	Timeout time.Duration
	// Clock returns the current time. Default time.Now; tests set it.
	Clock func() time.Time
	// Record, if set, is called for every cache hit, miss and KMS call.
	Record func(Event)
}

func (o *EncryptionOptions) setDefaults() error {
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxPayloads == 0 {
		o.MaxPayloads = DefaultMaxPayloads
	}
	if o.MaxScopes == 0 {
		o.MaxScopes = DefaultMaxScopes
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	switch {
	case o.MaxAge < 0:
		return errors.New("cache: MaxAge must not be negative")
	case o.MaxPayloads < 0:
		return errors.New("cache: MaxPayloads must not be negative")
	case o.MaxBytes < 0:
		return errors.New("cache: MaxBytes must not be negative")
	case o.MaxScopes < 0:
		return errors.New("cache: MaxScopes must not be negative")
	case o.Timeout < 0:
		return errors.New("cache: Timeout must not be negative")
	}
	return nil
}

// Scope is what a data key for encryption is generated for: one KMS key,
// named as the user configured it, and one encryption context. Build it
// once with NewScope and reuse it; it is a cache key.
type Scope struct {
	KeyID             string
	EncryptionContext map[string]string
	id                string
}

// NewScope returns the scope of keyID and ctx. ctx must not change
// afterwards.
func NewScope(keyID string, ctx map[string]string) Scope {
	names := make([]string, 0, len(ctx))
	for k := range ctx {
		names = append(names, k)
	}
	sort.Strings(names)
	// The key ID comes first, then each context key and value; length
	// prefixes make the identity unambiguous whatever the strings hold.
	var b strings.Builder
	writeField := func(s string) {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	writeField(keyID)
	for _, k := range names {
		writeField(k)
		writeField(ctx[k])
	}
	return Scope{KeyID: keyID, EncryptionContext: ctx, id: b.String()}
}

// EncryptionKeys hands out data keys for encryption and calls KMS
// GenerateDataKey when a scope has none within its limits. V is what the
// caller builds from each data key, once, with its prepare function.
//
// The hot path takes no lock: a lookup is an atomic load of an immutable
// map and an atomic add on the data key's counters.
type EncryptionKeys[V any] struct {
	api     kms.API
	opts    EncryptionOptions
	prepare func(DataKey) (V, error)

	mu     sync.Mutex // serializes writers of scopes
	scopes atomic.Pointer[map[string]*encryptionKey[V]]
	flight singleflight.Group
}

type encryptionKey[V any] struct {
	value   V
	keyARN  string
	created time.Time
	expires time.Time
	uses    atomic.Int64
	bytes   atomic.Int64
}

// NewEncryptionKeys returns an empty cache that generates data keys with
// api and turns each into a V with prepare. prepare must copy what it
// keeps of DataKey.Plaintext.
func NewEncryptionKeys[V any](api kms.API, opts EncryptionOptions, prepare func(DataKey) (V, error)) (*EncryptionKeys[V], error) {
	if api == nil {
		return nil, errors.New("cache: KMS client is nil")
	}
	if prepare == nil {
		return nil, errors.New("cache: prepare function is nil")
	}
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	c := &EncryptionKeys[V]{api: api, opts: opts, prepare: prepare}
	c.scopes.Store(&map[string]*encryptionKey[V]{})
	return c, nil
}

// Get returns a data key of scope s with room for one more payload of
// size bytes, and the ARN of the master key that wrapped it.
func (c *EncryptionKeys[V]) Get(s Scope, size int64) (V, string, error) {
	if c.opts.MaxPayloads == 1 {
		// One data key per payload: nothing to share, so nothing to wait
		// for either.
		record(c.opts.Record, EncryptMiss)
		k, err := c.generate(s)
		if err != nil {
			var zero V
			return zero, "", err
		}
		return k.value, k.keyARN, nil
	}
	if k := (*c.scopes.Load())[s.id]; k != nil && c.reserve(k, size) {
		record(c.opts.Record, EncryptHit)
		return k.value, k.keyARN, nil
	}
	record(c.opts.Record, EncryptMiss)
	for {
		v, err, _ := c.flight.Do(s.id, func() (any, error) {
			// Another flight may have replaced the key while this caller
			// was on its way here: a fresh key needs no KMS call.
			if k := (*c.scopes.Load())[s.id]; k != nil && c.usable(k) {
				return k, nil
			}
			k, err := c.generate(s)
			if err != nil {
				return nil, err
			}
			c.store(s.id, k)
			return k, nil
		})
		if err != nil {
			var zero V
			return zero, "", err
		}
		// Waiters of one flight share its key; if they use it up, the
		// ones left over start the next flight.
		if k := v.(*encryptionKey[V]); c.reserve(k, size) {
			return k.value, k.keyARN, nil
		}
	}
}

// usable reports whether k may seal more payloads, without using any of
// its allowance.
func (c *EncryptionKeys[V]) usable(k *encryptionKey[V]) bool {
	return c.opts.Clock().Before(k.expires) && k.uses.Load() < c.opts.MaxPayloads &&
		(c.opts.MaxBytes == 0 || k.bytes.Load() < c.opts.MaxBytes)
}

// reserve takes one payload of size bytes from k's allowance.
func (c *EncryptionKeys[V]) reserve(k *encryptionKey[V], size int64) bool {
	if !c.opts.Clock().Before(k.expires) {
		return false
	}
	if k.uses.Add(1) > c.opts.MaxPayloads {
		return false
	}
	if c.opts.MaxBytes > 0 {
		// The first payload always fits, so an oversized payload gets a
		// key of its own instead of asking KMS forever.
		if total := k.bytes.Add(size); total > c.opts.MaxBytes && total != size {
			return false
		}
	}
	return true
}

func (c *EncryptionKeys[V]) generate(s Scope) (*encryptionKey[V], error) {
	ctx, cancel := withTimeout(c.opts.Timeout)
	defer cancel()
	record(c.opts.Record, GenerateDataKeyCall)
	out, err := c.api.GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{
		KeyId:             aws.String(s.KeyID),
		KeySpec:           types.DataKeySpecAes256,
		EncryptionContext: s.EncryptionContext,
	})
	if err == nil {
		err = checkGenerated(out)
	}
	if err != nil {
		record(c.opts.Record, KMSFailure)
		return nil, &KMSError{Op: "GenerateDataKey", KeyID: s.KeyID, Err: err}
	}
	defer clear(out.Plaintext)
	v, err := c.prepare(DataKey{
		KeyARN:            *out.KeyId,
		Plaintext:         out.Plaintext,
		Wrapped:           out.CiphertextBlob,
		EncryptionContext: s.EncryptionContext,
	})
	if err != nil {
		return nil, err
	}
	now := c.opts.Clock()
	return &encryptionKey[V]{value: v, keyARN: *out.KeyId, created: now, expires: now.Add(c.opts.MaxAge)}, nil
}

func checkGenerated(out *awskms.GenerateDataKeyOutput) error {
	switch {
	case out == nil:
		return fmt.Errorf("%w: no output", ErrInvalidResponse)
	case out.KeyId == nil || !kms.IsKeyARN(*out.KeyId):
		return fmt.Errorf("%w: KeyId is not a key ARN", ErrInvalidResponse)
	case len(out.Plaintext) != 32:
		return fmt.Errorf("%w: plaintext data key is %d bytes, want 32", ErrInvalidResponse, len(out.Plaintext))
	case len(out.CiphertextBlob) == 0:
		return fmt.Errorf("%w: CiphertextBlob is empty", ErrInvalidResponse)
	}
	return nil
}

// store installs k as the data key of scope id, copying the map so that
// readers never see it change. When MaxScopes scopes are held it drops
// the expired ones and, if none is, the one with the oldest data key.
func (c *EncryptionKeys[V]) store(id string, k *encryptionKey[V]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.scopes.Load()
	next := make(map[string]*encryptionKey[V], len(old)+1)
	now := c.opts.Clock()
	for sid, sk := range old {
		if len(old) < c.opts.MaxScopes || now.Before(sk.expires) {
			next[sid] = sk
		}
	}
	if _, ok := next[id]; !ok && len(next) >= c.opts.MaxScopes {
		oldest := ""
		for sid, sk := range next {
			if oldest == "" || sk.created.Before(next[oldest].created) {
				oldest = sid
			}
		}
		delete(next, oldest)
	}
	next[id] = k
	c.scopes.Store(&next)
}

// held reports how many scopes hold a data key.
func (c *EncryptionKeys[V]) held() int {
	return len(*c.scopes.Load())
}
