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
	ttl     time.Duration
	timeout time.Duration
	clock   func() time.Time
	record  func(Event)
	current atomic.Pointer[resolution]
	flight  singleflight.Group
}

type resolution struct {
	arn     string
	expires time.Time
}

// NewKeyResolver returns a resolver of keyID that keeps an answer for ttl.
// timeout bounds the KMS call; clock and record may be nil.
func NewKeyResolver(api kms.API, keyID string, ttl, timeout time.Duration, clock func() time.Time, record func(Event)) (*KeyResolver, error) {
	if api == nil {
		return nil, errors.New("cache: KMS client is nil")
	}
	if keyID == "" {
		return nil, errors.New("cache: key ID is empty")
	}
	if clock == nil {
		clock = time.Now
	}
	return &KeyResolver{api: api, keyID: keyID, ttl: ttl, timeout: timeout, clock: clock, record: record}, nil
}

// ARN returns the key ARN that the key ID stands for now.
func (r *KeyResolver) ARN() (string, error) {
	if kms.IsKeyARN(r.keyID) {
		return r.keyID, nil
	}
	if cur := r.current.Load(); cur != nil && r.clock().Before(cur.expires) {
		return cur.arn, nil
	}
	v, err, _ := r.flight.Do("", func() (any, error) {
		ctx, cancel := withTimeout(r.timeout)
		defer cancel()
		record(r.record, DescribeKeyCall)
		out, err := r.api.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String(r.keyID)})
		if err == nil && (out == nil || out.KeyMetadata == nil || !kms.IsKeyARN(aws.ToString(out.KeyMetadata.Arn))) {
			err = fmt.Errorf("%w: DescribeKey returned no key ARN", ErrInvalidResponse)
		}
		if err != nil {
			record(r.record, KMSFailure)
			return nil, &KMSError{Op: "DescribeKey", KeyID: r.keyID, Err: err}
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
	r.current.Store(&resolution{arn: arn, expires: r.clock().Add(r.ttl)})
}
