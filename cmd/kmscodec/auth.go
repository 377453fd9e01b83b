package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// operation is what a request asks the codec to do.
type operation int

const (
	opDecode operation = iota
	opEncode
)

func (o operation) String() string {
	if o == opEncode {
		return "encode"
	}
	return "decode"
}

// principal is who a request was authenticated as, and what they may do.
type principal struct {
	// subject names the caller in the access log: the token's sub claim,
	// or "static-token". Never the token itself.
	subject string
	// any grants both operations in every namespace: the static token,
	// a temporal-system:admin permission, or --insecure-no-auth.
	any bool
	// roles maps a namespace to the operations allowed in it.
	roles map[string]roleSet
}

type roleSet struct{ read, write bool }

// allows reports whether p may run op in namespace.
func (p *principal) allows(namespace string, op operation) bool {
	if p.any {
		return true
	}
	r := p.roles[namespace]
	if op == opEncode {
		return r.write
	}
	return r.read
}

// authenticator checks a request's credentials.
type authenticator interface {
	authenticate(r *http.Request) (*principal, *apiError)
}

// noAuth lets every request through: --insecure-no-auth, loopback only.
type noAuth struct{}

func (noAuth) authenticate(*http.Request) (*principal, *apiError) {
	return &principal{subject: "anonymous", any: true}, nil
}

// tokenAuth accepts a static bearer token and, when configured, OIDC
// access tokens (JWTs). Either may be nil, not both.
type tokenAuth struct {
	static *staticToken
	oidc   *oidcVerifier
}

func (a *tokenAuth) authenticate(r *http.Request) (*principal, *apiError) {
	token, err := bearerToken(r)
	if err != nil {
		return nil, err
	}
	if a.static != nil && a.static.matches(token) {
		return &principal{subject: "static-token", any: true}, nil
	}
	if a.oidc != nil {
		return a.oidc.verify(r.Context(), token)
	}
	return nil, unauthenticated("invalid token", errors.New("bearer token does not match the static token"))
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header. The Web UI's Authorization-Extras header (an ID token) is not
// used: authorization rests on the access token alone.
func bearerToken(r *http.Request) (string, *apiError) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", unauthenticated("missing bearer token: send 'Authorization: Bearer <token>'", nil)
	}
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", unauthenticated("Authorization header is not 'Bearer <token>'", nil)
	}
	return token, nil
}

func unauthenticated(msg string, cause error) *apiError {
	e := errorf(http.StatusUnauthorized, codeUnauthenticated, "%s", msg)
	e.cause = cause
	return e
}

// staticToken is a shared secret. Only its hash is kept, and comparing
// hashes in constant time leaks neither the token nor its length.
type staticToken struct {
	sum [sha256.Size]byte
}

// minStaticTokenLen keeps guessable tokens out: 32 characters is 16
// random bytes in hex.
const minStaticTokenLen = 32

func newStaticToken(token string) (*staticToken, error) {
	token = strings.TrimSpace(token)
	if len(token) < minStaticTokenLen {
		return nil, fmt.Errorf("the static token is %d characters; use at least %d random ones (e.g. 'openssl rand -hex 32')", len(token), minStaticTokenLen)
	}
	return &staticToken{sum: sha256.Sum256([]byte(token))}, nil
}

func (s *staticToken) matches(token string) bool {
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], s.sum[:]) == 1
}

// oidcVerifier checks JWT access tokens against an OIDC issuer's keys and
// maps their permissions claim as Temporal's default claim mapper does:
// each entry is "<namespace>:<role>", role one of read, write, worker or
// admin, and "temporal-system:admin" grants everything.
type oidcVerifier struct {
	verifier *oidc.IDTokenVerifier
	claim    string
}

// oidcConfig configures newOIDCVerifier.
type oidcConfig struct {
	issuer   string
	audience string
	claim    string
	// now and client are for tests; nil means time.Now and a client with
	// a 10-second timeout.
	now    func() time.Time
	client *http.Client
}

// newOIDCVerifier fetches the issuer's discovery document (so a wrong
// issuer fails at startup, not at the first request) and prepares to
// fetch its JWKS, refreshed when a token names an unknown key.
func newOIDCVerifier(ctx context.Context, cfg oidcConfig) (*oidcVerifier, error) {
	if err := checkIssuerURL(cfg.issuer); err != nil {
		return nil, err
	}
	client := cfg.client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	ctx = oidc.ClientContext(ctx, client)
	provider, err := oidc.NewProvider(ctx, cfg.issuer)
	if err != nil {
		return nil, fmt.Errorf("OIDC discovery for %s: %w", cfg.issuer, err)
	}
	// The key set outlives the startup context: it fetches keys later.
	keysCtx := oidc.ClientContext(context.Background(), client)
	return &oidcVerifier{
		verifier: provider.VerifierContext(keysCtx, &oidc.Config{ClientID: cfg.audience, Now: cfg.now}),
		claim:    cfg.claim,
	}, nil
}

// checkIssuerURL insists on https, but for an issuer on this machine: the
// JWKS fetched from it decides who may decrypt.
func checkIssuerURL(issuer string) error {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--oidc-issuer %q is not a URL", issuer)
	}
	if u.Scheme == "https" {
		return nil
	}
	if u.Scheme == "http" && isLoopbackHost(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("--oidc-issuer %q must use https", issuer)
}

func (v *oidcVerifier) verify(ctx context.Context, raw string) (*principal, *apiError) {
	tok, err := v.verifier.Verify(ctx, raw)
	if err != nil {
		var expired *oidc.TokenExpiredError
		if errors.As(err, &expired) {
			return nil, unauthenticated("token expired", err)
		}
		return nil, unauthenticated("invalid token", err)
	}
	var claims map[string]json.RawMessage
	if err := tok.Claims(&claims); err != nil {
		return nil, unauthenticated("invalid token", err)
	}
	var perms []string
	if c, ok := claims[v.claim]; ok {
		if err := json.Unmarshal(c, &perms); err != nil {
			return nil, unauthenticated("invalid token", fmt.Errorf("claim %q is not a list of strings", v.claim))
		}
	}
	p := &principal{subject: tok.Subject, roles: map[string]roleSet{}}
	for _, perm := range perms {
		ns, role, ok := strings.Cut(perm, ":")
		if !ok || ns == "" || strings.Contains(role, ":") {
			continue // not a namespace permission; the claim mapper ignores these too
		}
		role = strings.ToLower(role)
		if ns == systemNamespace && role == "admin" {
			p.any = true
			continue
		}
		r := p.roles[ns]
		switch role {
		case "read":
			r.read = true
		case "write", "admin":
			r.read, r.write = true, true
		}
		// "worker" grants neither: in Temporal it is below read and
		// cannot read histories either.
		p.roles[ns] = r
	}
	return p, nil
}

// systemNamespace is Temporal's own namespace; an admin there is an admin
// of the cluster.
const systemNamespace = "temporal-system"

// isLoopbackHost reports whether host, a name or IP without port, is this
// machine for certain: a loopback IP or "localhost".
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
