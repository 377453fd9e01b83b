package codecserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"go.temporal.io/sdk/converter"

	"github.com/temporal-kms/kmscodec/codec"
)

// TestCodecErrorMapping: what a client is told for each error a Codec
// returns, however the codec wrapped it.
func TestCodecErrorMapping(t *testing.T) {
	wrapped := func(err error) error {
		return converter.NewWorkflowTaskFailureError(fmt.Errorf("kmscodec: decode payload 1 of 1: %w", err))
	}
	for _, tt := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"a namespace mismatch is 403, never a 500", wrapped(codec.ErrNamespaceMismatch), http.StatusForbidden, codeWrongNamespace},
		{"an unbound payload is 403", fmt.Errorf("payload 1: %w", errUnboundPayload), http.StatusForbidden, codeWrongNamespace},
		{"a key not allowed is 403", wrapped(codec.ErrKeyNotAllowed), http.StatusForbidden, codeKeyNotAllowed},
		{"a malformed payload is 400", fmt.Errorf("x: %w", codec.ErrMalformedPayload), http.StatusBadRequest, codeMalformedPayload},
		{"an altered payload is 400", codec.ErrAuthenticationFailed, http.StatusBadRequest, codeMalformedPayload},
		{"a request whose client left", context.Canceled, http.StatusServiceUnavailable, codeCanceled},
		{"anything else is 500", errors.New("boom"), http.StatusInternalServerError, codeInternal},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := codecError(tt.err)
			if e.Status != tt.status || e.Code != tt.code {
				t.Errorf("%d %q, want %d %q", e.Status, e.Code, tt.status, tt.code)
			}
			if !errors.Is(e.cause, tt.err) {
				t.Errorf("the cause is not kept for the log")
			}
		})
	}
}
