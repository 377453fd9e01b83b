package codecserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// OIDCOptions configure the acceptance of JWT access tokens from an OIDC
// issuer. Issuer and Audience are required; every other field has a
// default, given with it.
type OIDCOptions struct {
	// Issuer is the issuer URL (https, or http on loopback). Its tokens'
	// iss claim must equal it. Required.
	Issuer string
	// Audience is the aud the tokens must carry. Required: without it a
	// token minted for any other application would be accepted.
	Audience string
	// PermissionsClaim lists "<namespace>:<role>" permissions, as
	// Temporal's default claim mapper reads them. Default "permissions".
	// Not used when NamespaceAuthorizer is set.
	PermissionsClaim string
	// IdentityClaim is the claim naming the caller to NamespaceAuthorizer,
	// such as "https://saas-api.tmprl.cloud/user/email" for Temporal
	// Cloud. Required with NamespaceAuthorizer, which is asked about its
	// value (a non-empty string, or the token is refused).
	IdentityClaim string
	// NamespaceAuthorizer, if set, decides which namespaces a verified
	// token may read or write, instead of the permissions claim. Default
	// none.
	NamespaceAuthorizer NamespaceAuthorizer
	// JWKSURL is where the issuer's signing keys are. Default: the
	// jwks_uri of the issuer's discovery document, fetched by New. When
	// set, no discovery document is fetched.
	JWKSURL string
	// JWKSMinRefresh is the least time between two fetches of the keys.
	// A token naming a key not in the set fetches them again, at most
	// this often; a token naming a known key never does. Default 30s.
	JWKSMinRefresh time.Duration
	// HTTPClient fetches the discovery document and the keys. Default: a
	// client with a 10-second timeout.
	HTTPClient *http.Client
	// Now is the clock the expiry is checked against. Default time.Now.
	Now func() time.Time
}

// Defaults of OIDCOptions.
const (
	DefaultPermissionsClaim = "permissions"
	DefaultJWKSMinRefresh   = 30 * time.Second
)

func (o *OIDCOptions) validate() error {
	if err := CheckIssuerURL(o.Issuer); err != nil {
		return err
	}
	if o.Audience == "" {
		return errors.New("OIDC.Audience is required: without an audience check, a token minted for any other application would be accepted")
	}
	if o.PermissionsClaim == "" {
		o.PermissionsClaim = DefaultPermissionsClaim
	}
	if o.NamespaceAuthorizer != nil && o.IdentityClaim == "" {
		return errors.New("OIDC.NamespaceAuthorizer needs OIDC.IdentityClaim")
	}
	if o.JWKSURL != "" {
		if err := checkHTTPSURL("JWKS URL", o.JWKSURL); err != nil {
			return err
		}
	}
	switch {
	case o.JWKSMinRefresh < 0:
		return errors.New("OIDC.JWKSMinRefresh must not be negative")
	case o.JWKSMinRefresh == 0:
		o.JWKSMinRefresh = DefaultJWKSMinRefresh
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return nil
}

// CheckIssuerURL insists on https, but for an issuer on this machine: the
// keys fetched from it decide who may decrypt.
func CheckIssuerURL(issuer string) error { return checkHTTPSURL("OIDC issuer", issuer) }

func checkHTTPSURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s %q is not a URL", what, raw)
	}
	if u.Scheme == "https" || (u.Scheme == "http" && IsLoopbackHost(u.Hostname())) {
		return nil
	}
	return fmt.Errorf("%s %q must use https", what, raw)
}

// oidcVerifier checks JWT access tokens and maps them to a principal.
type oidcVerifier struct {
	verifier *oidc.IDTokenVerifier
	keys     *keySet
	opts     OIDCOptions
}

// newOIDCVerifier fetches the issuer's discovery document, unless
// JWKSURL is given (so a wrong issuer fails at startup, not at the first
// request). Keys are fetched at the first token.
func newOIDCVerifier(ctx context.Context, o OIDCOptions) (*oidcVerifier, error) {
	cfg := &oidc.Config{ClientID: o.Audience, Now: o.Now}
	if o.JWKSURL == "" {
		provider, err := oidc.NewProvider(oidc.ClientContext(ctx, o.HTTPClient), o.Issuer)
		if err != nil {
			return nil, fmt.Errorf("OIDC discovery for %s: %w", o.Issuer, err)
		}
		var doc struct {
			JWKSURL string   `json:"jwks_uri"`
			Algs    []string `json:"id_token_signing_alg_values_supported"`
		}
		if err := provider.Claims(&doc); err != nil {
			return nil, fmt.Errorf("OIDC discovery for %s: %w", o.Issuer, err)
		}
		if err := checkHTTPSURL("JWKS URL", doc.JWKSURL); err != nil {
			return nil, fmt.Errorf("OIDC discovery for %s: %w", o.Issuer, err)
		}
		o.JWKSURL = doc.JWKSURL
		cfg.SupportedSigningAlgs = supportedAlgs(doc.Algs)
	}
	keys := newKeySet(o.JWKSURL, o.HTTPClient, o.JWKSMinRefresh)
	return &oidcVerifier{verifier: oidc.NewVerifier(o.Issuer, keys, cfg), keys: keys, opts: o}, nil
}

// supportedAlgs keeps the asymmetric algorithms among those an issuer
// announces; go-oidc defaults to RS256 when none is left.
func supportedAlgs(announced []string) []string {
	var out []string
	for _, a := range announced {
		if signingAlgs[a] {
			out = append(out, a)
		}
	}
	return out
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
	p := &principal{subject: "oidc:" + tok.Subject, roles: map[string]roleSet{}}
	if v.opts.NamespaceAuthorizer != nil {
		var identity string
		if err := json.Unmarshal(claims[v.opts.IdentityClaim], &identity); err != nil || identity == "" {
			return nil, unauthenticated("invalid token", fmt.Errorf("claim %q is not a non-empty string", v.opts.IdentityClaim))
		}
		p.identity = identity
		return p, nil
	}
	var perms []string
	if c, ok := claims[v.opts.PermissionsClaim]; ok {
		if err := json.Unmarshal(c, &perms); err != nil {
			return nil, unauthenticated("invalid token", fmt.Errorf("claim %q is not a list of strings", v.opts.PermissionsClaim))
		}
	}
	grantPermissions(p, perms)
	return p, nil
}

// grantPermissions maps permissions as Temporal's default claim mapper
// does: each entry is "<namespace>:<role>", role one of read, write,
// worker or admin, and "temporal-system:admin" grants everything.
func grantPermissions(p *principal, perms []string) {
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
}
