package codecserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"

	"github.com/temporal-kms/kmscodec/codec/codecserver/cloudauth"
)

// Tokens of the scoped-token tests, each over 32 characters.
const (
	paymentsToken = "payments-token-0123456789abcdef0123456789"
	allToken      = "all-namespaces-token-0123456789abcdef0123"
	laterToken    = "later-token-0123456789abcdef0123456789abcd"
)

// writeTokenFile writes lines to path and gives it modification time
// mtime, so that a rewrite within the file system's time granularity
// still shows.
func writeTokenFile(t *testing.T, path string, mtime time.Time, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// TestScopedTokens: a token listed with namespaces decodes (and encodes,
// when the server does) in those namespaces and no other; "*" grants all.
func TestScopedTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokenFile(t, path, time.Now(),
		"# payments team",
		HashToken(paymentsToken)+" payments,payments-staging",
		"",
		HashToken(allToken)+" *")
	srv := startServer(t, newFakeKMS(newKeyARN), Options{ScopedTokenFile: path, EnableEncode: true})
	for _, tt := range []struct {
		name, token, path string
		status            int
	}{
		{"a token decodes in its namespace", paymentsToken, "/payments/decode", 200},
		{"and in its other namespace", paymentsToken, "/payments-staging/decode", 200},
		{"a token is refused in another namespace", paymentsToken, "/default/decode", 403},
		{"a token encodes in its namespace when the server encodes", paymentsToken, "/payments/encode", 200},
		{"a token does not encode in another namespace", paymentsToken, "/default/encode", 403},
		{"a token for * decodes anywhere", allToken, "/default/decode", 200},
		{"a token not in the file is refused", laterToken, "/payments/decode", 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := body(t, plain(1))
			if strings.HasSuffix(tt.path, "/decode") {
				ns := strings.Split(tt.path, "/")[1]
				in = body(t, encryptedIn(t, ns))
			}
			r := request(t, http.MethodPost, srv.url+tt.path, in, "Authorization", "Bearer "+tt.token)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
		})
	}
	if logs := srv.logs.String(); strings.Contains(logs, paymentsToken) || strings.Contains(logs, HashToken(paymentsToken)) {
		t.Errorf("the log names a token or its hash:\n%s", logs)
	}
}

// encryptedIn is a payload encrypted under newKeyARN bound to namespace.
func encryptedIn(t *testing.T, namespace string) []*commonpb.Payload {
	return encrypted(t, newKeyARN, namespace, 1)
}

// TestScopedTokenFileReload: a change to the file is picked up without a
// restart; a file that no longer parses leaves the last good tokens in
// force, and is logged without its content.
func TestScopedTokenFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	start := time.Now().Add(-time.Hour)
	writeTokenFile(t, path, start, HashToken(paymentsToken)+" payments")
	srv := startServer(t, newFakeKMS(newKeyARN), Options{ScopedTokenFile: path, ScopedTokenCheckInterval: time.Millisecond})
	decode := func(token string) int {
		time.Sleep(2 * time.Millisecond) // past the check interval
		return request(t, http.MethodPost, srv.url+"/payments/decode", body(t, plain(1)), "Authorization", "Bearer "+token).status
	}
	if got := decode(laterToken); got != 401 {
		t.Fatalf("a token not yet listed: status %d, want 401", got)
	}

	writeTokenFile(t, path, start.Add(time.Minute), HashToken(paymentsToken)+" payments", HashToken(laterToken)+" payments")
	if got := decode(laterToken); got != 200 {
		t.Fatalf("a token added to the file: status %d, want 200", got)
	}

	const mistyped = "sha256:not-a-hash-" + allToken
	writeTokenFile(t, path, start.Add(2*time.Minute), HashToken(paymentsToken)+" payments", mistyped+" payments")
	if got := decode(laterToken); got != 200 {
		t.Errorf("after the file broke, a token of the last good file: status %d, want 200", got)
	}
	if got := decode(allToken); got != 401 {
		t.Errorf("after the file broke, a token on a broken line: status %d, want 401", got)
	}
	logs := srv.logs.String()
	if !strings.Contains(logs, "scoped-token file invalid; keeping the tokens last loaded") || !strings.Contains(logs, "line 2") {
		t.Errorf("the broken file is not logged with its line:\n%s", logs)
	}
	if strings.Contains(logs, allToken) || strings.Contains(logs, laterToken) || strings.Contains(logs, HashToken(laterToken)) {
		t.Errorf("the log holds a token or its hash:\n%s", logs)
	}
	if n := strings.Count(logs, "scoped-token file invalid"); n != 1 {
		t.Errorf("the broken file was logged %d times, want once", n)
	}
}

// TestScopedTokenFileMustParseAtStart: a broken file at startup is a
// configuration error, not an empty set of tokens.
func TestScopedTokenFileMustParseAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokenFile(t, path, time.Now(), "sha256:abc payments")
	_, err := New(Options{Codec: PayloadCodec(nil), ScopedTokenFile: path})
	if err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("New: %v, want an error naming line 1", err)
	}
}

// fakeAuthorizer grants what allowed lists ("identity namespace read" or
// "... write"), and fails with err when set.
type fakeAuthorizer struct {
	allowed map[string]bool
	err     error

	mu    sync.Mutex
	calls []string
}

func (f *fakeAuthorizer) AuthorizeNamespace(_ context.Context, identity, namespace string, write bool) error {
	access := "read"
	if write {
		access = "write"
	}
	call := identity + " " + namespace + " " + access
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if !f.allowed[call] {
		return errors.New("no such grant")
	}
	return nil
}

// unavailableError is how an authorizer says it could not decide.
type unavailableError struct{}

func (unavailableError) Error() string     { return "authorizer unreachable" }
func (unavailableError) Unavailable() bool { return true }

// TestNamespaceAuthorizer: with an authorizer, the identity claim of a
// verified token is what is authorized, not its permissions claim; an
// authorizer that cannot decide fails the request closed with 503.
func TestNamespaceAuthorizer(t *testing.T) {
	const claim = "https://saas-api.tmprl.cloud/user/email"
	iss := newTestIssuer(t)
	authz := &fakeAuthorizer{allowed: map[string]bool{"alice@example.com default read": true}}
	opts := iss.options()
	opts.IdentityClaim, opts.NamespaceAuthorizer = claim, authz
	srv := startServer(t, newFakeKMS(newKeyARN), Options{OIDC: opts, EnableEncode: true})
	alice := iss.token(t, func(c map[string]any) {
		c[claim] = "alice@example.com"
		c["permissions"] = []string{"temporal-system:admin"} // not used
	})
	noIdentity := iss.token(t, nil)

	for _, tt := range []struct {
		name, token, path string
		status            int
	}{
		{"the authorizer grants read", alice, "/default/decode", 200},
		{"the authorizer refuses another namespace, whatever the permissions claim", alice, "/payments/decode", 403},
		{"the authorizer is asked for write to encode", alice, "/default/encode", 403},
		{"a token without the identity claim is refused", noIdentity, "/default/decode", 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := request(t, http.MethodPost, srv.url+tt.path, body(t, plain(1)), "Authorization", "Bearer "+tt.token)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
		})
	}
	want := []string{"alice@example.com default read", "alice@example.com payments read", "alice@example.com default write"}
	if fmt.Sprint(authz.calls) != fmt.Sprint(want) {
		t.Errorf("authorizer asked %q, want %q", authz.calls, want)
	}

	authz.err = fmt.Errorf("cloud ops API: %w", unavailableError{})
	r := request(t, http.MethodPost, srv.url+"/default/decode", body(t, plain(1)), "Authorization", "Bearer "+alice)
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Errorf("an unavailable authorizer: status %d, Retry-After %q; want 503 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
}

// TestNamespaceAuthorizerNeedsIdentityClaim: without a claim to ask
// about, the authorizer could not be asked anything meaningful.
func TestNamespaceAuthorizerNeedsIdentityClaim(t *testing.T) {
	err := Options{Codec: PayloadCodec(nil), OIDC: &OIDCOptions{Issuer: "https://issuer.example", Audience: "a", NamespaceAuthorizer: &fakeAuthorizer{}}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "IdentityClaim") {
		t.Fatalf("Validate: %v, want an error naming IdentityClaim", err)
	}
}

// TestReadyz: /readyz reports Options.Ready, /healthz only that the
// server is up; neither needs a token.
func TestReadyz(t *testing.T) {
	var mu sync.Mutex
	var readyErr error = errors.New("KMS has not answered yet")
	srv := startServer(t, newFakeKMS(newKeyARN), Options{Ready: func() error {
		mu.Lock()
		defer mu.Unlock()
		return readyErr
	}})
	if r := request(t, http.MethodGet, srv.url+"/readyz", ""); r.status != 503 || !strings.Contains(r.errBody.Message, "KMS has not answered yet") {
		t.Errorf("GET /readyz before ready: %d %s, want 503 with the reason", r.status, r.body)
	}
	if r := request(t, http.MethodGet, srv.url+"/healthz", ""); r.status != 200 {
		t.Errorf("GET /healthz before ready: %d, want 200", r.status)
	}
	mu.Lock()
	readyErr = nil
	mu.Unlock()
	if r := request(t, http.MethodGet, srv.url+"/readyz", ""); r.status != 200 {
		t.Errorf("GET /readyz once ready: %d %s", r.status, r.body)
	}
}

// The Temporal Cloud authorizer plugs into OIDCOptions.NamespaceAuthorizer.
var _ NamespaceAuthorizer = (*cloudauth.Authorizer)(nil)

// TestCloudAuthErrorsMapToStatuses: the Cloud authorizer's "could not
// decide" fails closed with 503; its refusals are 403.
func TestCloudAuthErrorsMapToStatuses(t *testing.T) {
	if !unavailable(fmt.Errorf("authorizing: %w", &cloudauth.UnavailableError{Err: errors.New("dial tcp: timeout")})) {
		t.Error("cloudauth.UnavailableError is not taken as unavailable")
	}
	for _, err := range []error{cloudauth.ErrNoAccess, cloudauth.ErrUnknownUser} {
		if unavailable(err) {
			t.Errorf("%v is taken as unavailable, want a refusal", err)
		}
	}
}
