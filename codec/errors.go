package codec

import (
	"errors"

	"github.com/temporal-kms/kmscodec/cache"
	"github.com/temporal-kms/kmscodec/envelope"
)

// Errors that Decode returns, to test with errors.Is. Each is wrapped with
// the position of the payload at fault.
var (
	// ErrMalformedPayload: a payload marked kms-envelope-v1 has a missing,
	// empty or oversized field, data too short to hold an envelope, or an
	// encryption context that is not a JSON object of strings in the
	// canonical encoding (docs/FORMAT.md). No KMS call is made for it.
	ErrMalformedPayload = envelope.ErrMalformed

	// ErrAuthenticationFailed: the key commitment or the AES-GCM tag did
	// not verify; the payload was altered after it was sealed.
	ErrAuthenticationFailed = envelope.ErrAuthentication

	// ErrUnsupportedFormat: the payload is binary/encrypted in an
	// encryption-format this codec does not implement.
	ErrUnsupportedFormat = envelope.ErrUnsupportedFormat

	// ErrKeyNotAllowed: the payload names a master key that is neither the
	// key the codec encrypts with nor in Options.DecryptKeyIDs. No KMS
	// call is made for it.
	ErrKeyNotAllowed = errors.New("kmscodec: payload's master key is not allowed for decryption")

	// ErrNamespaceMismatch: Options.RequireSameNamespace is set and a
	// payload's encryption context names another namespace than the one
	// the codec decodes for. No KMS call is made for it.
	ErrNamespaceMismatch = errors.New("kmscodec: payload belongs to another namespace")

	// ErrUnencryptedPayload: Options.RejectUnencrypted is set and a payload
	// is not encrypted.
	ErrUnencryptedPayload = errors.New("kmscodec: payload is not encrypted")
)

// KMSError is a failed KMS call. errors.As reaches it, and through its
// Unwrap the AWS SDK's error (a smithy.APIError or a KMS exception type
// such as *types.InvalidCiphertextException).
type KMSError = cache.KMSError
