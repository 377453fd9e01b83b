// Package codec is the Temporal PayloadCodec of kmscodec: it encrypts
// every payload a Temporal client or worker writes under its own key,
// derived from a data key that AWS KMS generated, and decrypts them again.
//
// Use [New] to build a [Codec] from a KMS client and a key, then
// [NewDataConverter] and [NewFailureConverter] for client.Options, so that
// workflow inputs, results, signals, queries, updates, memos, heartbeats
// and failures all reach the Temporal server encrypted. Use the Codec on
// its own where a PayloadCodec is wanted, as in a codec server.
package codec

import (
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/temporal-kms/kmscodec/cache"
	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/kms"
)

// NamespaceContextKey is the encryption context key under which the codec
// binds each data key to the Temporal namespace it was generated for. KMS
// refuses to unwrap the data key with any other namespace in the context.
const NamespaceContextKey = "temporal-namespace"

// Defaults of Options, applied to fields left zero.
const (
	DefaultDataKeyMaxAge         = cache.DefaultMaxAge
	DefaultMaxPayloadsPerDataKey = cache.DefaultMaxPayloads
	DefaultDecryptCacheSize      = cache.DefaultSize
	DefaultDecryptCacheTTL       = cache.DefaultTTL
	DefaultKMSTimeout            = cache.DefaultTimeout
	// DefaultNegativeCacheTTL is how long a KMS refusal of a wrapped data
	// key is remembered, so that a flood of payloads carrying it costs
	// one KMS call. It is not an option.
	DefaultNegativeCacheTTL = cache.DefaultNegativeTTL
	// DefaultAliasFailureTTL is how long a failure to resolve an alias
	// KeyID (DescribeKey) is remembered, so that during a KMS outage each
	// payload does not wait for a call of its own. It is not an option.
	DefaultAliasFailureTTL = cache.DefaultResolveFailureTTL
)

// Options configure a Codec. KMS and KeyID are required; every other
// field has a default, given with it.
type Options struct {
	// KMS is the client that generates and unwraps data keys, usually
	// kms.NewFromConfig(cfg) from aws-sdk-go-v2. Required.
	KMS kms.API

	// KeyID is the KMS key that new payloads are encrypted under: a key
	// ARN, key ID, alias name ("alias/temporal") or alias ARN. Payloads
	// always record the key ARN. With an alias, the codec follows the
	// alias to a new key within DataKeyMaxAge. Required unless
	// DisableEncryption is set.
	KeyID string

	// DecryptKeyIDs are further key ARNs whose payloads may be decrypted:
	// the keys rotated away from. A payload under any other key fails with
	// ErrKeyNotAllowed before any KMS call. Only key ARNs are accepted, so
	// that moving an alias never widens what is decrypted.
	DecryptKeyIDs []string

	// EncryptionContext is added to every data key's KMS encryption
	// context: a KMS key policy or grant can require it, and CloudTrail
	// logs it with every call. It must not set NamespaceContextKey.
	EncryptionContext map[string]string

	// Namespace is the Temporal namespace put in the encryption context
	// when the SDK does not say which namespace a payload belongs to: the
	// payloads of Nexus operations (whose serialization context names no
	// namespace), a schedule's memo, and everything a codec used on its
	// own encodes. Set it to the namespace the client or worker connects
	// to. Default: none, and those payloads are bound to no namespace.
	Namespace string

	// DataKeyMaxAge is how long a generated data key is used for new
	// payloads, and how long an alias KeyID is taken to stand for the
	// same key. Default DefaultDataKeyMaxAge, 5 minutes.
	DataKeyMaxAge time.Duration

	// MaxPayloadsPerDataKey is how many payloads one data key encrypts
	// before a new one is generated. Default DefaultMaxPayloadsPerDataKey,
	// 10,000. Set 1 for a KMS data key per payload.
	MaxPayloadsPerDataKey int64

	// MaxBytesPerDataKey bounds the payload bytes one data key encrypts.
	// Default 0: no bound.
	MaxBytesPerDataKey int64

	// DecryptCacheSize is how many unwrapped data keys are kept for
	// decryption. Default DefaultDecryptCacheSize, 10,000.
	DecryptCacheSize int

	// DecryptCacheTTL is how long an unwrapped data key is kept. Default
	// DefaultDecryptCacheTTL, 1 hour.
	DecryptCacheTTL time.Duration

	// KMSTimeout bounds each KMS call, retries by the AWS SDK included.
	// Default DefaultKMSTimeout, 5 seconds, well inside Temporal's default
	// 10-second workflow task timeout.
	KMSTimeout time.Duration

	// MetricsHandler, if set, receives the codec's counters; pass the same
	// handler as client.Options.MetricsHandler. Stats returns them too.
	MetricsHandler client.MetricsHandler

	// RejectUnencrypted makes Decode fail with ErrUnencryptedPayload on a
	// payload that is not encrypted. By default such payloads pass
	// through, so histories written before encryption was turned on still
	// read.
	RejectUnencrypted bool

	// RequireSameNamespace makes Decode fail with ErrNamespaceMismatch,
	// before any KMS call, on a payload whose encryption context names a
	// namespace other than the one the codec is decoding for (the SDK's
	// serialization context, WithNamespace, or Options.Namespace). It stops
	// a payload copied into this namespace's history from another
	// namespace's from being decrypted by this namespace's workers.
	// Payloads that name no namespace still decode. Off by default because
	// some payloads legitimately cross namespaces: the input and result of
	// a Nexus operation handled in another namespace name the namespace
	// that wrote them (see WithSerializationContext).
	RequireSameNamespace bool

	// DisableEncryption makes Encode pass payloads through unchanged while
	// Decode still decrypts: for rolling encryption back without
	// stranding encrypted histories.
	DisableEncryption bool

	// Clock returns the current time. Default time.Now; tests set it.
	Clock func() time.Time
}

// Codec encrypts and decrypts Temporal payloads. It implements
// converter.PayloadCodec and converter.PayloadCodecWithSerializationContext
// and is safe for concurrent use. Copies made by WithNamespace and
// WithSerializationContext share the caches and counters of the Codec
// they come from.
type Codec struct {
	*shared
	scope cache.Scope // the data keys new payloads are encrypted under
}

var (
	_ converter.PayloadCodec                         = (*Codec)(nil)
	_ converter.PayloadCodecWithSerializationContext = (*Codec)(nil)
)

// shared is what every namespace-bound view of one Codec has in common.
type shared struct {
	opts     Options
	encrypt  *cache.EncryptionKeys[*envelope.Key]
	decrypt  *cache.DecryptionKeys
	resolver *cache.KeyResolver // nil when nothing is encrypted
	allowed  map[string]bool
	metrics  *metrics

	mu     sync.RWMutex
	scopes map[string]cache.Scope // by namespace
}

// maxScopes bounds the namespace views a Codec remembers; beyond it a
// view is built afresh on every call, which only costs time.
const maxScopes = 1024

// New validates opts and returns a Codec. It makes no KMS call: data keys
// are generated on first use, so a worker starts even while KMS is out of
// reach, and fails its tasks (to be retried) until KMS answers.
func New(opts Options) (*Codec, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("kmscodec: %w", err)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	opts.EncryptionContext = maps.Clone(opts.EncryptionContext)
	s := &shared{opts: opts, allowed: map[string]bool{}, scopes: map[string]cache.Scope{}}
	for _, id := range opts.DecryptKeyIDs {
		s.allowed[id] = true
	}
	if kms.IsKeyARN(opts.KeyID) {
		s.allowed[opts.KeyID] = true
	}
	s.metrics = newMetrics(opts.MetricsHandler)
	if err := s.buildCaches(); err != nil {
		// Unreachable for validated options: a bug, not the caller's.
		return nil, fmt.Errorf("kmscodec: %w", err)
	}
	return &Codec{shared: s, scope: s.scopeFor(opts.Namespace)}, nil
}

// validate checks what New cannot work with, naming the Options field.
func (o *Options) validate() error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...)
	}
	switch {
	case o.KMS == nil:
		return invalid("Options.KMS is required")
	case o.KeyID == "" && !o.DisableEncryption:
		return invalid("Options.KeyID is required unless Options.DisableEncryption is set")
	case o.DataKeyMaxAge < 0:
		return invalid("Options.DataKeyMaxAge must not be negative")
	case o.MaxPayloadsPerDataKey < 0:
		return invalid("Options.MaxPayloadsPerDataKey must not be negative")
	case o.MaxBytesPerDataKey < 0:
		return invalid("Options.MaxBytesPerDataKey must not be negative")
	case o.DecryptCacheSize < 0:
		return invalid("Options.DecryptCacheSize must not be negative")
	case o.DecryptCacheTTL < 0:
		return invalid("Options.DecryptCacheTTL must not be negative")
	case o.KMSTimeout < 0:
		return invalid("Options.KMSTimeout must not be negative")
	}
	if _, ok := o.EncryptionContext[NamespaceContextKey]; ok {
		return invalid("Options.EncryptionContext must not set %q: use Options.Namespace", NamespaceContextKey)
	}
	if b, err := envelope.MarshalContext(withNamespace(o.EncryptionContext, "")); err != nil {
		return invalid("Options.EncryptionContext is not valid UTF-8")
	} else if len(b) > envelope.MaxContextSize/2 {
		return invalid("Options.EncryptionContext is %d bytes as JSON; keep it under %d", len(b), envelope.MaxContextSize/2)
	}
	for _, id := range o.DecryptKeyIDs {
		if !kms.IsKeyARN(id) {
			return invalid("Options.DecryptKeyIDs: %q is not a key ARN", id)
		}
	}
	return nil
}

// buildCaches builds the data-key caches and the alias resolver from the
// validated options; zero values take the cache package's defaults,
// which are this package's.
func (s *shared) buildCaches() error {
	opts := s.opts
	var err error
	s.decrypt, err = cache.NewDecryptionKeys(opts.KMS, cache.DecryptionOptions{
		Size:    opts.DecryptCacheSize,
		TTL:     opts.DecryptCacheTTL,
		Timeout: opts.KMSTimeout,
		Clock:   opts.Clock,
		Record:  s.metrics.record,
	})
	if err != nil {
		return err
	}
	s.encrypt, err = cache.NewEncryptionKeys(opts.KMS, cache.EncryptionOptions{
		MaxAge:      opts.DataKeyMaxAge,
		MaxPayloads: opts.MaxPayloadsPerDataKey,
		MaxBytes:    opts.MaxBytesPerDataKey,
		Timeout:     opts.KMSTimeout,
		Clock:       opts.Clock,
		Record:      s.metrics.record,
	}, s.prepare)
	if err != nil {
		return err
	}
	if opts.KeyID != "" {
		s.resolver, err = cache.NewKeyResolver(opts.KMS, opts.KeyID, cache.ResolverOptions{
			TTL:     opts.DataKeyMaxAge,
			Timeout: opts.KMSTimeout,
			Clock:   opts.Clock,
			Record:  s.metrics.record,
		})
	}
	return err
}

// WithNamespace returns a view of c that binds new data keys to namespace
// (in the encryption context under NamespaceContextKey). It shares c's
// caches and counters. An empty namespace leaves c as it is.
func (c *Codec) WithNamespace(namespace string) *Codec {
	if namespace == "" {
		return c
	}
	return c.view(namespace)
}

// view returns the view of c's Codec bound to namespace, c itself if c
// is that view.
func (c *Codec) view(namespace string) *Codec {
	if namespace == c.scope.EncryptionContext[NamespaceContextKey] {
		return c
	}
	return &Codec{shared: c.shared, scope: c.scopeFor(namespace)}
}

// WithSerializationContext implements
// converter.PayloadCodecWithSerializationContext. The SDK calls it before
// the payloads of a workflow, an activity or a Nexus operation, and the
// payloads that follow are bound to:
//
//   - for a workflow or activity context, the namespace it names, the
//     namespace the workflow or activity runs in;
//   - for a Nexus context, Options.Namespace. The SDK's Nexus context names
//     the endpoint, service and operation but no namespace. The codec
//     binds what it writes to its own namespace, the namespace of the
//     client or worker doing the writing: on the caller's side the
//     operation's input is bound to the caller's namespace, on the
//     handler's side a synchronous operation's result to the handler's.
//     (A workflow-run operation's result is its workflow's, bound by the
//     workflow's context to the handler's namespace too.) So a payload always names the namespace
//     that wrote it, and KMS logs which namespace asked for each key.
//     Decoding needs no namespace, so the other side reads it; but with
//     RequireSameNamespace it refuses a payload written in another
//     namespace, so a Nexus operation across namespaces needs that option
//     off on both sides;
//   - for any other context, or one naming no namespace, Options.Namespace.
//
// With Options.Namespace empty, payloads of the last two kinds name no
// namespace (see docs/SECURITY.md).
func (c *Codec) WithSerializationContext(ctx converter.SerializationContext) converter.PayloadCodec {
	namespace := ""
	switch ctx := ctx.(type) {
	case converter.WorkflowSerializationContext:
		namespace = ctx.Namespace
	case converter.ActivitySerializationContext:
		namespace = ctx.Namespace
	case converter.NexusSerializationContext:
		// Names no namespace: bound to the codec's own, as described above.
	}
	if namespace == "" {
		namespace = c.opts.Namespace
	}
	return c.view(namespace)
}

// Encode encrypts each payload into a kms-envelope-v1 payload. It fails
// rather than return any payload unencrypted. A KMS failure is wrapped in
// converter.WorkflowTaskFailureError so that Temporal retries the
// workflow task instead of failing the workflow.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if c.opts.DisableEncryption {
		return payloads, nil
	}
	out := make([]*commonpb.Payload, len(payloads))
	var n uint64
	for i, p := range payloads {
		if p == nil {
			return nil, c.fail("encode", i, len(payloads), ErrNilPayload)
		}
		var size int64
		if c.opts.MaxBytesPerDataKey > 0 {
			size = int64(proto.Size(p))
		}
		key, _, err := c.encrypt.Get(c.scope, size)
		if err != nil {
			return nil, c.fail("encode", i, len(payloads), err)
		}
		if out[i], err = key.Seal(p, nil); err != nil {
			return nil, c.fail("encode", i, len(payloads), err)
		}
		n += uint64(len(p.GetData()))
	}
	c.metrics.add(payloadsEncoded, uint64(len(payloads)))
	c.metrics.add(bytesEncoded, n)
	return out, nil
}

// Decode decrypts each kms-envelope-v1 payload back into the payload that
// was encoded, and passes any payload this codec did not encode through
// unchanged (unless Options.RejectUnencrypted). It never depends on the
// serialization context: each payload carries what it needs.
//
// A payload under a master key that is not allowed fails with
// ErrKeyNotAllowed, and a malformed one with ErrMalformedPayload, both
// before any KMS call; a payload that was altered fails with
// ErrAuthenticationFailed.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	// Every payload is parsed and checked before KMS is asked for any data
	// key, so a batch that is refused for one bad payload costs no KMS call.
	var small [8]*envelope.Envelope
	envs := small[:0]
	if len(payloads) > len(small) {
		envs = make([]*envelope.Envelope, 0, len(payloads))
	}
	for i, p := range payloads {
		env, err := envelope.Parse(p)
		if errors.Is(err, envelope.ErrNotEncrypted) {
			if c.opts.RejectUnencrypted {
				return nil, c.fail("decode", i, len(payloads), ErrUnencryptedPayload)
			}
			envs = append(envs, nil)
			continue
		}
		if err == nil {
			err = c.checkAllowed(env.KeyARN)
		}
		if err == nil && c.opts.RequireSameNamespace {
			err = c.checkNamespace(env)
		}
		if err != nil {
			return nil, c.fail("decode", i, len(payloads), err)
		}
		envs = append(envs, env)
	}
	out := make([]*commonpb.Payload, len(payloads))
	var decoded, n uint64
	for i, env := range envs {
		if env == nil {
			out[i] = payloads[i]
			continue
		}
		dataKey, err := c.dataKey(env)
		if err == nil {
			out[i], err = env.Open(dataKey)
		}
		if err != nil {
			return nil, c.fail("decode", i, len(payloads), err)
		}
		decoded++
		n += uint64(len(out[i].GetData()))
	}
	c.metrics.add(payloadsDecoded, decoded)
	c.metrics.add(payloadsPassedThrough, uint64(len(payloads))-decoded)
	c.metrics.add(bytesDecoded, n)
	return out, nil
}

// dataKey returns the data key that env was sealed with, from the cache
// or else from KMS.
func (s *shared) dataKey(env *envelope.Envelope) ([]byte, error) {
	if k, ok := s.decrypt.Cached(env.KeyIdentity()); ok {
		return k, nil
	}
	// Building the WrappedKey allocates (the method value), so a hit
	// above does without it.
	return s.decrypt.Get(cache.WrappedKey{
		Identity:          env.KeyIdentity(),
		KeyARN:            env.KeyARN,
		Blob:              env.WrappedKey,
		EncryptionContext: env.EncryptionContext,
	})
}

// checkAllowed returns ErrKeyNotAllowed unless keyARN is the key the
// codec encrypts with or one of DecryptKeyIDs.
func (s *shared) checkAllowed(keyARN string) error {
	if s.allowed[keyARN] {
		return nil
	}
	if s.resolver != nil {
		current, err := s.resolver.ARN()
		if err != nil {
			return err
		}
		if current == keyARN {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrKeyNotAllowed, keyARN)
}

// checkNamespace returns ErrNamespaceMismatch if env's encryption context
// names a namespace and c is bound to another.
func (c *Codec) checkNamespace(env *envelope.Envelope) error {
	ctx, err := env.EncryptionContext()
	if err != nil {
		return err
	}
	got, named := ctx[NamespaceContextKey]
	want, bound := c.scope.EncryptionContext[NamespaceContextKey]
	if named && bound && got != want {
		return fmt.Errorf("%w: payload names %q, decoding for %q", ErrNamespaceMismatch, got, want)
	}
	return nil
}

// prepare turns a data key that KMS just generated into the envelope.Key
// that seals with it, and puts it into the decryption cache, so that a
// worker reading back its own payloads (an activity's input, a query's
// result) makes no KMS call.
func (s *shared) prepare(dk cache.DataKey) (*envelope.Key, error) {
	k, err := envelope.NewKey(dk.Plaintext, envelope.Header{
		KeyARN:            dk.KeyARN,
		WrappedKey:        dk.Wrapped,
		EncryptionContext: dk.EncryptionContext,
	})
	if err != nil {
		return nil, err
	}
	s.decrypt.Add(k.Identity(), dk.Plaintext)
	if s.resolver != nil {
		s.resolver.Observe(dk.KeyARN)
	}
	return k, nil
}

// scopeFor returns the data-key scope of namespace, remembered so that
// the SDK's per-call WithSerializationContext costs a map lookup.
func (s *shared) scopeFor(namespace string) cache.Scope {
	s.mu.RLock()
	sc, ok := s.scopes[namespace]
	s.mu.RUnlock()
	if ok {
		return sc
	}
	sc = cache.NewScope(s.opts.KeyID, withNamespace(s.opts.EncryptionContext, namespace))
	s.mu.Lock()
	if len(s.scopes) < maxScopes {
		s.scopes[namespace] = sc
	}
	s.mu.Unlock()
	return sc
}

func withNamespace(ctx map[string]string, namespace string) map[string]string {
	if namespace == "" {
		return ctx
	}
	out := make(map[string]string, len(ctx)+1)
	maps.Copy(out, ctx)
	out[NamespaceContextKey] = namespace
	return out
}

// fail counts err by kind and wraps it with where it happened. Errors an
// operator can fix without touching the payload (KMS unavailable, a key
// missing from the allow-list, a namespace mismatch) are marked as
// workflow task failures, so Temporal retries the task rather than
// failing the workflow; the payload's own faults (malformed, altered,
// refused by KMS) are not, since no retry changes the payload.
func (s *shared) fail(op string, i, n int, err error) error {
	kind := ErrorKind(err)
	s.metrics.countError(kind)
	err = fmt.Errorf("kmscodec: %s payload %d of %d: %w", op, i+1, n, err)
	if kind.retryable() {
		return converter.NewWorkflowTaskFailureError(err)
	}
	return err
}
