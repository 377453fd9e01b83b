// Package cache keeps the data keys that KMS generated or unwrapped, so
// that kmscodec calls KMS once per data key rather than once per payload.
//
// [EncryptionKeys] hands out data keys for sealing, each reused within a
// maximum age, payload count and byte count. [DecryptionKeys] holds
// unwrapped data keys for opening, in a bounded LRU with expiry, and
// remembers KMS rejections for a short while so a flood of payloads with
// one bad wrapped key costs one KMS call, not one per payload.
// [KeyResolver] learns the key ARN behind an alias or key ID. All three
// make concurrent cold requests for the same key share one KMS call, and
// none of them ever caches a failure as a success.
package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/smithy-go"
)

// Defaults of the options in this package. The codec's own defaults are
// these (codec.DefaultDataKeyMaxAge and the rest).
const (
	DefaultMaxAge            = 5 * time.Minute
	DefaultMaxPayloads       = 10_000
	DefaultMaxScopes         = 1024
	DefaultSize              = 10_000
	DefaultTTL               = time.Hour
	DefaultNegativeSize      = 1024
	DefaultNegativeTTL       = 10 * time.Second
	DefaultTimeout           = 5 * time.Second
	DefaultResolveFailureTTL = 5 * time.Second
)

// DataKey is a data key in plaintext together with what names it.
type DataKey struct {
	// KeyARN is the ARN of the KMS key that wrapped the data key.
	KeyARN string
	// Plaintext is the 32-byte AES-256 data key. Callers that keep it
	// must copy it: the cache clears the buffer KMS returned.
	Plaintext []byte
	// Wrapped is the CiphertextBlob: the data key wrapped by KeyARN.
	Wrapped []byte
	// EncryptionContext is the context the data key is bound to.
	EncryptionContext map[string]string
}

// Event is something a cache did that a caller may want to count.
type Event int

// The events a cache reports through its Record function.
const (
	EncryptHit Event = iota
	EncryptMiss
	DecryptHit
	DecryptMiss
	GenerateDataKeyCall
	DecryptCall
	DescribeKeyCall
	KMSFailure
	NegativeHit
	numEvents
)

// NumEvents is the number of distinct events, for callers that keep a
// counter per event in an array.
const NumEvents = int(numEvents)

// KMSError is a failed KMS call. It wraps the AWS SDK's error, so
// errors.As reaches the smithy.APIError or the KMS exception type.
type KMSError struct {
	// Op is the KMS operation: GenerateDataKey, Decrypt or DescribeKey.
	Op string
	// KeyID is the key ID, alias or key ARN the call named.
	KeyID string
	// Err is the cause.
	Err error
}

func (e *KMSError) Error() string {
	return fmt.Sprintf("kms %s (key %s): %v", e.Op, e.KeyID, e.Err)
}

func (e *KMSError) Unwrap() error { return e.Err }

// Transient reports whether retrying the same call later may succeed:
// throttling, KMS-side faults, timeouts and network errors. KMS rejecting
// the request itself (access denied, invalid ciphertext, disabled key) is
// not transient.
func (e *KMSError) Transient() bool {
	if errors.Is(e.Err, ErrInvalidResponse) {
		return false
	}
	var apiErr smithy.APIError
	if !errors.As(e.Err, &apiErr) {
		return true // a timeout, a cancelled context or a broken connection
	}
	switch apiErr.ErrorCode() {
	case "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
		"LimitExceededException", "KMSInternalException", "DependencyTimeoutException":
		return true
	}
	return apiErr.ErrorFault() != smithy.FaultClient
}

// RefusedCiphertext reports whether KMS answered a Decrypt by refusing the
// wrapped data key itself (InvalidCiphertextException, or
// IncorrectKeyException for a blob made under another key): the payload
// that carries it was altered or does not belong to the key and context
// it names. Retrying cannot help, and KMS is not at fault.
func (e *KMSError) RefusedCiphertext() bool {
	var apiErr smithy.APIError
	if e.Op != "Decrypt" || !errors.As(e.Err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode() {
	case "InvalidCiphertextException", "IncorrectKeyException":
		return true
	}
	return false
}

// ErrInvalidResponse means KMS answered a call with something unusable: a
// plaintext data key that is not 32 bytes, or a key ARN other than the
// one asked for.
var ErrInvalidResponse = errors.New("invalid response from KMS")

// withTimeout is the context of one KMS call: PayloadCodec has no context
// of its own, so the caches bound each call themselves.
func withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func record(f func(Event), e Event) {
	if f != nil {
		f(e)
	}
}
