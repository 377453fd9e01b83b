package codecserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
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
	// subject names the caller in the access log and keys its KMS rate
	// limit: "oidc:" and the token's sub claim, "static-token", or
	// "scoped-token:" and the start of the token's hash. Never the token.
	subject string
	// any grants both operations in every namespace: the static token, a
	// scoped token for "*", a temporal-system:admin permission, or
	// InsecureNoAuth.
	any bool
	// roles maps a namespace to the operations allowed in it.
	roles map[string]roleSet
	// identity, when set, is what Options.OIDC.NamespaceAuthorizer is
	// asked about instead of roles.
	identity string
}

type roleSet struct{ read, write bool }

// allows reports whether p's own grants allow op in namespace.
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

// NamespaceAuthorizer decides whether the identity named by a verified
// token may read (write=false) or write a namespace. An error whose chain
// has a method Unavailable() bool returning true means the authorizer
// could not decide: the request fails with 503 (closed). Any other error
// refuses the request with 403.
type NamespaceAuthorizer interface {
	AuthorizeNamespace(ctx context.Context, identity, namespace string, write bool) error
}

// unavailable reports whether err says its authorizer could not decide.
func unavailable(err error) bool {
	var u interface{ Unavailable() bool }
	return errors.As(err, &u) && u.Unavailable()
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

// MinTokenLength keeps guessable static tokens out: 32 characters is 16
// random bytes in hex.
const MinTokenLength = 32

func newStaticToken(token string) (*staticToken, error) {
	token = strings.TrimSpace(token)
	if len(token) < MinTokenLength {
		return nil, fmt.Errorf("the static token is %d characters; use at least %d random ones (e.g. 'openssl rand -hex 32')", len(token), MinTokenLength)
	}
	return &staticToken{sum: sha256.Sum256([]byte(token))}, nil
}

func (s *staticToken) matches(sum [sha256.Size]byte) bool {
	return subtle.ConstantTimeCompare(sum[:], s.sum[:]) == 1
}

// systemNamespace is Temporal's own namespace; an admin there is an admin
// of the cluster.
const systemNamespace = "temporal-system"

// IsLoopbackHost reports whether host, a name or IP without port, is this
// machine for certain: a loopback IP or "localhost".
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.EqualFold(host, "localhost.") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkLoopbackHost refuses a request whose Host header does not name
// this machine's loopback (and port, if known). Without it, a web page
// whose own name an attacker re-points at 127.0.0.1 (DNS rebinding)
// could call a server without authentication from a developer's browser.
func checkLoopbackHost(r *http.Request, port string) *apiError {
	host, p, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, p = r.Host, ""
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if !IsLoopbackHost(host) || (port != "" && p != port) {
		return errorf(http.StatusMisdirectedRequest, codeMisdirected, "this server answers only requests addressed to its loopback address")
	}
	return nil
}
