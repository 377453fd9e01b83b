package main

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
// more, goes to the server log only.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	cause   error
}

func (e *apiError) Error() string { return e.Message }

// Error codes, stable for clients to match on.
const (
	codeBadRequest       = "bad_request"
	codeMalformedPayload = "malformed_payload"
	codeUnauthenticated  = "unauthenticated"
	codeForbidden        = "forbidden"
	codeKeyNotAllowed    = "key_not_allowed"
	codeWrongNamespace   = "namespace_mismatch"
	codeNotFound         = "not_found"
	codeMethod           = "method_not_allowed"
	codeTooLarge         = "request_too_large"
	codeTooManyPayloads  = "too_many_payloads"
	codeBusy             = "busy"
	codeKMS              = "kms_error"
	codeInternal         = "internal"
)

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// codecError turns an error of codec.Encode or Decode into what the
// client is told. KMS failures are the server's upstream failing (502),
// except KMS refusing a payload's wrapped key; everything else is about
// the payloads the client sent.
func codecError(err error) *apiError {
	var kmsErr *codec.KMSError
	var e *apiError
	switch {
	case errors.As(err, &kmsErr):
		// The AWS error code (AccessDeniedException, ThrottlingException,
		// DisabledException...) tells an operator what to fix; the AWS
		// message may name principals, so it stays in the log.
		code := "unknown error"
		var apiErr smithy.APIError
		if errors.As(kmsErr.Err, &apiErr) {
			code = apiErr.ErrorCode()
		} else if errors.Is(kmsErr.Err, context.DeadlineExceeded) {
			code = "timeout"
		}
		if kmsErr.RefusedCiphertext() {
			// KMS answered, and its answer is that the payload's wrapped
			// key is not one it made under that key and context: the
			// payload is at fault, not KMS.
			e = errorf(http.StatusBadRequest, codeMalformedPayload, "KMS refused a payload's wrapped data key (%s): the payload was altered, or does not belong to the key and context it names", code)
			break
		}
		e = errorf(http.StatusBadGateway, codeKMS, "KMS %s failed: %s", kmsErr.Op, code)
	case errors.Is(err, codec.ErrKeyNotAllowed):
		e = errorf(http.StatusForbidden, codeKeyNotAllowed, "a payload is encrypted under a KMS key this server is not allowed to decrypt with")
	case errors.Is(err, codec.ErrMalformedPayload):
		e = errorf(http.StatusBadRequest, codeMalformedPayload, "a payload is marked kms-envelope-v1 but is malformed")
	case errors.Is(err, codec.ErrAuthenticationFailed):
		e = errorf(http.StatusBadRequest, codeMalformedPayload, "a payload failed authentication: it was altered after it was encrypted")
	case errors.Is(err, codec.ErrUnsupportedFormat):
		e = errorf(http.StatusBadRequest, codeMalformedPayload, "a payload uses an encryption format this server does not support")
	case errors.Is(err, codec.ErrUnencryptedPayload):
		e = errorf(http.StatusBadRequest, codeMalformedPayload, "a payload is not encrypted")
	default:
		e = errorf(http.StatusInternalServerError, codeInternal, "internal error")
	}
	e.cause = err
	return e
}

// writeJSONError sends e as {"code": ..., "message": ...}.
func writeJSONError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(e)
}
