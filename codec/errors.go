package codec

import (
	"errors"

	"github.com/temporal-kms/kmscodec/cache"
	"github.com/temporal-kms/kmscodec/envelope"
)

// Errors that Encode, Decode and New return, to test with errors.Is.
// Encode and Decode wrap each with the position of the payload at fault;
// ErrorKind sorts them into kinds.
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
	ErrKeyNotAllowed = errors.New("payload's master key is not allowed for decryption")

	// ErrNamespaceMismatch: Options.RequireSameNamespace is set and a
	// payload's encryption context names another namespace than the one
	// the codec decodes for. No KMS call is made for it.
	ErrNamespaceMismatch = errors.New("payload belongs to another namespace")

	// ErrUnencryptedPayload: Options.RejectUnencrypted is set and a payload
	// is not encrypted.
	ErrUnencryptedPayload = errors.New("payload is not encrypted")

	// ErrNilPayload: Encode was given a nil payload.
	ErrNilPayload = errors.New("payload is nil")

	// ErrInvalidOptions: New was given Options it cannot work with; the
	// message names the field.
	ErrInvalidOptions = errors.New("invalid options")
)

// KMSError is a failed KMS call. errors.As reaches it, and through its
// Unwrap the AWS SDK's error (a smithy.APIError or a KMS exception type
// such as *types.InvalidCiphertextException).
type KMSError = cache.KMSError

// Kind is what went wrong, in terms a caller can act on: whether the
// payload, the caller, KMS or the codec is at fault. Its String is stable,
// for metrics (the kind tag of kmscodec_errors) and logs.
type Kind int

// The kinds of error, by ErrorKind.
const (
	// KindNone: no error.
	KindNone Kind = iota
	// KindMalformed: ErrMalformedPayload. The payload's fault.
	KindMalformed
	// KindAuthentication: ErrAuthenticationFailed. The payload's fault.
	KindAuthentication
	// KindUnsupportedFormat: ErrUnsupportedFormat. The payload's fault,
	// or a codec too old for it.
	KindUnsupportedFormat
	// KindKeyNotAllowed: ErrKeyNotAllowed. Configuration: the key is
	// missing from Options.DecryptKeyIDs, or the payload is foreign.
	KindKeyNotAllowed
	// KindNamespaceMismatch: ErrNamespaceMismatch. The payload is another
	// namespace's.
	KindNamespaceMismatch
	// KindUnencrypted: ErrUnencryptedPayload. The payload is plaintext
	// where only encrypted payloads are accepted.
	KindUnencrypted
	// KindKMSRefused: KMS refused the payload's wrapped data key as a
	// ciphertext (InvalidCiphertextException, IncorrectKeyException): it
	// was altered, or it does not belong to the key and context it names.
	// The payload's fault; see ErrorKind.
	KindKMSRefused
	// KindKMSUnavailable: any other failed KMS call: throttling, an
	// outage, a timeout, but also access denied, a disabled or missing
	// key, or an unusable answer. Not the payload's fault: retrying after
	// KMS or its configuration is fixed can succeed.
	KindKMSUnavailable
	// KindInvalidArgument: the caller's mistake, not the payload's: a nil
	// payload (ErrNilPayload), invalid Options (ErrInvalidOptions).
	KindInvalidArgument
	// KindInternal: anything else.
	KindInternal
	numKinds
)

var kindNames = [numKinds]string{
	KindNone:              "none",
	KindMalformed:         "malformed",
	KindAuthentication:    "authentication",
	KindUnsupportedFormat: "unsupported_format",
	KindKeyNotAllowed:     "key_not_allowed",
	KindNamespaceMismatch: "namespace_mismatch",
	KindUnencrypted:       "unencrypted",
	KindKMSRefused:        "kms_refused",
	KindKMSUnavailable:    "kms_unavailable",
	KindInvalidArgument:   "invalid_argument",
	KindInternal:          "internal",
}

// String returns the kind's name, in snake case: "malformed",
// "kms_refused" and so on.
func (k Kind) String() string {
	if k < 0 || k >= numKinds {
		return "internal"
	}
	return kindNames[k]
}

// ErrorKind returns the kind of err, as returned by New, Encode or
// Decode (wrapped or not); KindNone for nil.
//
// A KMS refusal of a wrapped data key is KindKMSRefused, the payload's
// fault like KindMalformed and KindAuthentication: KMS is answering and
// says this ciphertext is not one of its own for that key and context,
// which no retry changes. So Decode does not mark it for retry (see
// Decode), and a codec server answers it as a bad request. Access denied
// is KindKMSUnavailable instead, since it is what a key policy being
// fixed or deployed looks like, and the same payload then decodes.
func ErrorKind(err error) Kind {
	var kmsErr *KMSError
	switch {
	case err == nil:
		return KindNone
	case errors.As(err, &kmsErr):
		if kmsErr.RefusedCiphertext() {
			return KindKMSRefused
		}
		return KindKMSUnavailable
	case errors.Is(err, ErrMalformedPayload):
		return KindMalformed
	case errors.Is(err, ErrAuthenticationFailed):
		return KindAuthentication
	case errors.Is(err, ErrUnsupportedFormat):
		return KindUnsupportedFormat
	case errors.Is(err, ErrKeyNotAllowed):
		return KindKeyNotAllowed
	case errors.Is(err, ErrNamespaceMismatch):
		return KindNamespaceMismatch
	case errors.Is(err, ErrUnencryptedPayload):
		return KindUnencrypted
	case errors.Is(err, ErrNilPayload), errors.Is(err, ErrInvalidOptions):
		return KindInvalidArgument
	}
	return KindInternal
}

// retryable reports whether an error of kind k is one an operator can fix
// without touching the payload, so that the SDK should retry the task
// rather than fail the workflow.
func (k Kind) retryable() bool {
	switch k {
	case KindKMSUnavailable, KindKeyNotAllowed, KindNamespaceMismatch:
		return true
	}
	return false
}
