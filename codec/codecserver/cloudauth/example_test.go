package cloudauth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/temporal-kms/kmscodec/codec/codecserver/cloudauth"
)

// A codec server builds one Authorizer at start-up from the API key of a
// service account, then asks it about every request once the user's
// token is verified. New opens no connection yet: the first lookup does.
func ExampleNew() {
	// The key comes from a file (or an environment variable), never a flag.
	keyFile := filepath.Join(os.TempDir(), "kmscodec-example-cloud-api-key")
	if err := os.WriteFile(keyFile, []byte("example-api-key\n"), 0o600); err != nil {
		fmt.Println(err)
		return
	}
	defer os.Remove(keyFile)
	apiKey, err := cloudauth.APIKeyFromFile(keyFile)
	if err != nil {
		fmt.Println(err)
		return
	}

	authz, err := cloudauth.New(cloudauth.Options{
		APIKey: apiKey,           // Endpoint defaults to saas-api.tmprl.cloud:443, over TLS
		TTL:    30 * time.Second, // revocations apply within 30 s
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer authz.Close()

	// Plaintext is for a loopback test fake only:
	_, err = cloudauth.New(cloudauth.Options{APIKey: apiKey, Endpoint: "saas-api.tmprl.cloud:443", Insecure: true})
	fmt.Println(err != nil)

	// Output: true
}

// statusFor is how a codec server turns AuthorizeNamespace's answer into
// an HTTP status: the API being unavailable is not the user's fault.
func statusFor(err error) int {
	var u interface{ Unavailable() bool }
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &u) && u.Unavailable():
		return http.StatusServiceUnavailable
	default: // ErrNoAccess, ErrUnknownUser
		return http.StatusForbidden
	}
}

func ExampleAuthorizer_AuthorizeNamespace() {
	// With nothing listening at the endpoint, the decision cannot be
	// made: the request is refused, as unavailable.
	authz, err := cloudauth.New(cloudauth.Options{APIKey: "example-api-key", Endpoint: "127.0.0.1:1", Insecure: true, Timeout: time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer authz.Close()
	err = authz.AuthorizeNamespace(context.Background(), "alice@example.com", "orders", false)
	fmt.Println(statusFor(err))

	// An identity that is no email address is refused without asking.
	err = authz.AuthorizeNamespace(context.Background(), "", "orders", false)
	fmt.Println(statusFor(err), errors.Is(err, cloudauth.ErrUnknownUser))

	// Output:
	// 503
	// 403 true
}
