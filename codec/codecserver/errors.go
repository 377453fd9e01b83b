package codecserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	smithy "github.com/aws/smithy-go"

	"github.com/temporal-kms/kmscodec/codec"
)

// apiError is what a client is told when a request fails. Its message is
// written for the person reading the Web UI or CLI error; it never holds
// payload contents, key material or tokens. The cause, which may say
// more, goes to the server log only, and so must not hold them either.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	cause   error
	// retryAfter, in whole seconds, is sent as Retry-After when set.
	retryAfter int
	// header, when its name is set, is sent with the error (Allow,
	// WWW-Authenticate).
	header [2]string
}

func (e *apiError) Error() string { return e.Message }

// Error codes, stable for clients to match on.
const (
	codeBadRequest       = "bad_request"
	codeMalformedPayload = "malformed_payload"
	codeUnauthenticated  = "unauthenticated"
	codeForbidden        = "forbidden"
	codeKeyNotAllowed    = "key_not_allowed"
	codeWrongNamespace   = "wrong_namespace"
	codeNotFound         = "not_found"
	codeMethod           = "method_not_allowed"
	codeMediaType        = "unsupported_media_type"
	codeMisdirected      = "misdirected_request"
	codeTooLarge         = "request_too_large"
	codeTooManyPayloads  = "too_many_payloads"
	codeTooManyDataKeys  = "too_many_data_keys"
	codeRateLimited      = "rate_limited"
	codeBusy             = "busy"
	codeUnavailable      = "unavailable"
	codeKMS              = "kms_error"
	codeCanceled         = "canceled"
	codeInternal         = "internal"
)

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// errUnboundPayload is a payload whose encryption context names no
// namespace, on a server that decrypts only namespace-bound payloads.
var errUnboundPayload = errors.New("payload is not bound to a namespace")

// codecError turns an error of a Codec's Encode or Decode into what the
// client is told. It is the one place that does, by codec.ErrorKind:
// KMS failing is the server's upstream failing (502), KMS refusing a
// payload's wrapped key is the payload's fault (400), a payload of
// another namespace is 403; the rest is about the payloads the client
// sent, or the server's fault (500).
func codecError(err error) *apiError {
	var e *apiError
	var kmsErr *codec.KMSError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded) && !errors.As(err, &kmsErr):
		// The client left or the write deadline passed: nobody reads this.
		e = errorf(http.StatusServiceUnavailable, codeCanceled, "the request was canceled")
	case errors.Is(err, errUnboundPayload):
		e = errorf(http.StatusForbidden, codeWrongNamespace, "a payload is not bound to a namespace; this server decrypts only namespace-bound payloads")
	default:
		e = codecKindError(err)
	}
	e.cause = err
	return e
}

func codecKindError(err error) *apiError {
	switch codec.ErrorKind(err) {
	case codec.KindKMSRefused, codec.KindKMSUnavailable:
		var kmsErr *codec.KMSError
		if errors.As(err, &kmsErr) {
			return kmsError(kmsErr)
		}
	case codec.KindNamespaceMismatch:
		return errorf(http.StatusForbidden, codeWrongNamespace, "a payload belongs to another namespace than the request's")
	case codec.KindKeyNotAllowed:
		return errorf(http.StatusForbidden, codeKeyNotAllowed, "a payload is encrypted under a KMS key this server is not allowed to decrypt with")
	case codec.KindMalformed:
		return errorf(http.StatusBadRequest, codeMalformedPayload, "a payload is marked kms-envelope-v1 but is malformed")
	case codec.KindAuthentication:
		return errorf(http.StatusBadRequest, codeMalformedPayload, "a payload failed authentication: it was altered after it was encrypted")
	case codec.KindUnsupportedFormat:
		return errorf(http.StatusBadRequest, codeMalformedPayload, "a payload uses an encryption format this server does not support")
	case codec.KindUnencrypted:
		return errorf(http.StatusBadRequest, codeMalformedPayload, "a payload is not encrypted")
	}
	return errorf(http.StatusInternalServerError, codeInternal, "internal error")
}

// kmsError tells a client that KMS failed. The AWS error code
// (AccessDeniedException, ThrottlingException, DisabledException...)
// tells an operator what to fix; the AWS message may name principals, so
// it stays in the log.
func kmsError(kmsErr *codec.KMSError) *apiError {
	code := "unknown error"
	var apiErr smithy.APIError
	if errors.As(kmsErr.Err, &apiErr) {
		code = apiErr.ErrorCode()
	} else if errors.Is(kmsErr.Err, context.DeadlineExceeded) {
		code = "timeout"
	}
	if kmsErr.RefusedCiphertext() {
		// KMS answered, and its answer is that the payload's wrapped key
		// is not one it made under that key and context: the payload is
		// at fault, not KMS.
		return errorf(http.StatusBadRequest, codeMalformedPayload, "KMS refused a payload's wrapped data key (%s): the payload was altered, or does not belong to the key and context it names", code)
	}
	return errorf(http.StatusBadGateway, codeKMS, "KMS %s failed: %s", kmsErr.Op, code)
}

// writeJSONError sends e as {"code": ..., "message": ...}.
func writeJSONError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if e.header[0] != "" {
		h.Set(e.header[0], e.header[1])
	}
	if e.retryAfter > 0 {
		h.Set("Retry-After", fmt.Sprint(e.retryAfter))
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(e)
}
