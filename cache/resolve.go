package cache

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"golang.org/x/sync/singleflight"

	"github.com/temporal-kms/kmscodec/kms"
)

// KeyResolver learns the key ARN that a configured key ID stands for.
//
// Payloads name their master key by ARN, but users may configure an alias
// or a bare key ID. A worker that starts by replaying history must know
// its own key's ARN before it has encrypted anything, and an alias may be
// moved to a new key at any time, so the ARN is asked of KMS
// (DescribeKey) and kept for a limited time. A key ARN resolves to itself
// without a call.
type KeyResolver struct {
	api     kms.API
	keyID   string
	opts    ResolverOptions
	current atomic.Pointer[resolution]
	flight  singleflight.Group
}

// ResolverOptions configure a KeyResolver. Zero values take the defaults
// given.
type ResolverOptions struct {
	// TTL is how long a resolved key ARN is used before KMS is asked
	// again. Default DefaultMaxAge, so that a moved alias is followed as
	// soon as data keys are replaced.
	TTL time.Duration
	// FailureTTL is how long a failed DescribeKey is returned without
	// asking KMS again, so that during an outage every payload does not
	// wait for its own failed call. Default DefaultResolveFailureTTL;
	// negative turns it off.
	FailureTTL time.Duration
	// Timeout bounds each KMS call. Default DefaultTimeout.
	Timeout time.Duration
	// Clock returns the current time. Default time.Now; tests set it.
	Clock func() time.Time
	// Record, if set, is called for every KMS call.
	Record func(Event)
}

func (o *ResolverOptions) setDefaults() error {
	if o.TTL == 0 {
		o.TTL = DefaultMaxAge
	}
	if o.FailureTTL == 0 {
		o.FailureTTL = DefaultResolveFailureTTL
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	switch {
	case o.TTL < 0:
		return errors.New("cache: TTL must not be negative")
	case o.Timeout < 0:
		return errors.New("cache: Timeout must not be negative")
	}
	return nil
}

// resolution is the latest answer: a key ARN, or the error DescribeKey
// failed with.
type resolution struct {
	arn     string
	err     error
	expires time.Time
}

// NewKeyResolver returns a resolver of keyID.
func NewKeyResolver(api kms.API, keyID string, opts ResolverOptions) (*KeyResolver, error) {
	if api == nil {
		return nil, errors.New("cache: KMS client is nil")
	}
	if keyID == "" {
		return nil, errors.New("cache: key ID is empty")
	}
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	return &KeyResolver{api: api, keyID: keyID, opts: opts}, nil
}

// ARN returns the key ARN that the key ID stands for now.
func (r *KeyResolver) ARN() (string, error) {
	if kms.IsKeyARN(r.keyID) {
		return r.keyID, nil
	}
	if cur := r.current.Load(); cur != nil && r.opts.Clock().Before(cur.expires) {
		return cur.arn, cur.err
	}
	v, err, _ := r.flight.Do("", func() (any, error) {
		ctx, cancel := withTimeout(r.opts.Timeout)
		defer cancel()
		record(r.opts.Record, DescribeKeyCall)
		out, err := r.api.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String(r.keyID)})
		if err == nil && (out == nil || out.KeyMetadata == nil || !kms.IsKeyARN(aws.ToString(out.KeyMetadata.Arn))) {
			err = fmt.Errorf("%w: DescribeKey returned no key ARN", ErrInvalidResponse)
		}
		if err != nil {
			record(r.opts.Record, KMSFailure)
			err = &KMSError{Op: "DescribeKey", KeyID: r.keyID, Err: err}
			if r.opts.FailureTTL > 0 {
				r.current.Store(&resolution{err: err, expires: r.opts.Clock().Add(r.opts.FailureTTL)})
			}
			return nil, err
		}
		arn := aws.ToString(out.KeyMetadata.Arn)
		r.Observe(arn)
		return arn, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// Observe records arn as what the key ID stands for now, as
// GenerateDataKey reports it, saving a DescribeKey call.
func (r *KeyResolver) Observe(arn string) {
	r.current.Store(&resolution{arn: arn, expires: r.opts.Clock().Add(r.opts.TTL)})
}
