package cloudauth

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
	"unicode"

	cloudservice "go.temporal.io/cloud-sdk/api/cloudservice/v1"
)

// DefaultEndpoint is the Temporal Cloud Operations API.
const DefaultEndpoint = "saas-api.tmprl.cloud:443"

// EmailClaim is the claim of the access tokens Temporal Cloud gives its
// Web UI that holds the signed-in user's email: the identity to pass to
// AuthorizeNamespace once the token's signature is verified.
const EmailClaim = "https://saas-api.tmprl.cloud/user/email"

// Options configure an Authorizer. Zero values take the defaults given.
type Options struct {
	// Endpoint is the host:port of the Cloud Operations API. Default
	// DefaultEndpoint.
	Endpoint string
	// APIKey authenticates kmscodec to the Cloud Operations API: an API
	// key of a service account that may read the account's users (see
	// docs/TEMPORAL-CLOUD.md). Required unless Client is set. Read it from
	// a file (APIKeyFromFile) or the environment, never from a flag,
	// whose value shows in the process list.
	APIKey string
	// TTL is how long a user's access, as the API reported it, is used
	// without asking again: both the namespaces it grants and the ones it
	// does not. A grant or revocation in Temporal Cloud therefore takes up
	// to TTL to apply here. Default 1 minute.
	TTL time.Duration
	// UnknownUserTTL is how long an identity the API does not know stays
	// refused without asking again, so that a stranger's requests do not
	// each cost an API call. At most TTL; negative turns it off. Default
	// 10 seconds. Failures to reach the API (unreachable, timed out,
	// refused our key, unexpected answer) are never remembered: the next
	// request asks again.
	UnknownUserTTL time.Duration
	// Timeout bounds each lookup of a user, all its API pages together.
	// The lookup is not retried: the request that needed it fails with an
	// UnavailableError and the next one asks again. Default 5 seconds.
	Timeout time.Duration
	// MaxEntries is how many users' access the cache holds; the least
	// recently used goes first. Default 10,000.
	MaxEntries int
	// Insecure connects without TLS. Only for tests against a Cloud
	// Operations API fake on a loopback address: New refuses it for any
	// other endpoint, since the API key would cross the network in the
	// clear.
	Insecure bool
	// Client, if set, is used for every API call instead of a connection
	// New opens; the caller owns it and has set up its credentials.
	// Endpoint, APIKey and Insecure must then be empty.
	Client cloudservice.CloudServiceClient
	// Clock returns the current time, for the cache's expiry. Default
	// time.Now; tests set it.
	Clock func() time.Time
}

// String describes the options without the API key, so that logging
// them is safe.
func (o Options) String() string {
	key := "unset"
	if o.APIKey != "" {
		key = "set"
	}
	return fmt.Sprintf("cloudauth.Options{Endpoint: %q, APIKey: %s, TTL: %v, UnknownUserTTL: %v, Timeout: %v, MaxEntries: %d, Insecure: %v, Client: %v}",
		o.Endpoint, key, o.TTL, o.UnknownUserTTL, o.Timeout, o.MaxEntries, o.Insecure, o.Client != nil)
}

// LogValue is String for log/slog.
func (o Options) LogValue() slog.Value { return slog.StringValue(o.String()) }

// maxAPIKeyBytes bounds what is read as an API key from a file.
const maxAPIKeyBytes = 4096

// APIKeyFromFile reads an API key from path, trimming surrounding
// whitespace (such as the newline an editor adds). An empty file is an
// error. Errors never contain the key.
func APIKeyFromFile(path string) (string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("cloudauth: API key file: %w", err)
	}
	if info.Size() > maxAPIKeyBytes {
		return "", fmt.Errorf("cloudauth: API key file %s is %d bytes; an API key is at most %d", path, info.Size(), maxAPIKeyBytes)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cloudauth: API key file: %w", err)
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("cloudauth: API key file %s is empty", path)
	}
	return key, nil
}

func (o *Options) setDefaults() error {
	if o.Client == nil && o.Endpoint == "" {
		o.Endpoint = DefaultEndpoint
	}
	if o.TTL == 0 {
		o.TTL = time.Minute
	}
	if o.UnknownUserTTL == 0 {
		o.UnknownUserTTL = 10 * time.Second
	}
	if o.UnknownUserTTL > o.TTL {
		o.UnknownUserTTL = o.TTL
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = 10_000
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	switch {
	case o.TTL < 0:
		return errors.New("cloudauth: TTL must not be negative")
	case o.Timeout < 0:
		return errors.New("cloudauth: Timeout must not be negative")
	case o.MaxEntries < 0:
		return errors.New("cloudauth: MaxEntries must not be negative")
	}
	if o.Client != nil {
		if o.Endpoint != "" || o.APIKey != "" || o.Insecure {
			return errors.New("cloudauth: Client comes with its own connection and credentials; leave Endpoint, APIKey and Insecure empty")
		}
		return nil
	}
	if err := checkAPIKey(o.APIKey); err != nil {
		return err
	}
	return checkEndpoint(o.Endpoint, o.Insecure)
}

func checkAPIKey(key string) error {
	if key == "" {
		return errors.New("cloudauth: APIKey is required (the API key of a service account that may read users)")
	}
	if strings.IndexFunc(key, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		// The message must not quote the key.
		return errors.New("cloudauth: APIKey contains whitespace or control characters")
	}
	return nil
}

func checkEndpoint(endpoint string, insecure bool) error {
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("cloudauth: Endpoint %q is not host:port", endpoint)
	}
	if insecure && !isLoopback(host) {
		return fmt.Errorf("cloudauth: Insecure (no TLS) is only allowed to a loopback endpoint, not %q: the API key would cross the network in the clear", endpoint)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
