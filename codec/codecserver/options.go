package codecserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Server. Codec and one way of authenticating
// (StaticToken, ScopedTokenFile, OIDC, or InsecureNoAuth alone) are
// required; every other field has a default, given with it.
type Options struct {
	// Codec decodes and encodes: KMSCodec{Codec: c} for a kmscodec codec,
	// PayloadCodec(pc) for any other. Required.
	Codec Codec

	// StaticToken, if set, is a bearer token (at least MinTokenLength
	// characters) that may decode, and encode when EnableEncode, in every
	// namespace. Only its hash is kept.
	StaticToken string
	// ScopedTokenFile, if set, names a file of lines
	// "sha256:<64 hex digits of the token's SHA-256> <ns>[,<ns>...]", or
	// "*" instead of namespaces for all of them; "#" starts a comment.
	// A token may decode, and encode when EnableEncode, in its
	// namespaces. The file is read again when its modification time or
	// size changes; one that no longer parses leaves the last good tokens
	// in force. It must parse at New.
	ScopedTokenFile string
	// ScopedTokenCheckInterval is the least time between two looks at
	// whether ScopedTokenFile changed. Default 5s.
	ScopedTokenCheckInterval time.Duration
	// OIDC, if set, accepts JWT access tokens from an OIDC issuer.
	OIDC *OIDCOptions
	// InsecureNoAuth serves without authentication, for development on
	// loopback: it answers only requests whose Host header is a loopback
	// name or address (and LoopbackPort, if set), so that a web page
	// cannot reach it by re-pointing its own name (DNS rebinding). It
	// excludes every other way of authenticating.
	InsecureNoAuth bool
	// LoopbackPort is the port the server listens on, checked in the Host
	// header with InsecureNoAuth. Default "": any port.
	LoopbackPort string

	// DefaultNamespace is the namespace of a request that names none: the
	// Temporal CLI sends an empty X-Namespace when its user relied on the
	// default namespace. Default "": such requests fail with 400.
	DefaultNamespace string
	// AllowedNamespaces, if not empty, are the only namespaces served.
	// Default: every namespace a caller is allowed.
	AllowedNamespaces []string
	// EnableEncode serves /encode. Default false: a server that only
	// decodes needs only kms:Decrypt.
	EnableEncode bool

	// CORSOrigins are the Web UI origins allowed to call from a browser,
	// each exactly scheme://host[:port]. Default none: no cross-origin
	// request is allowed, and no CORS header is ever sent. "*" is refused.
	CORSOrigins []string
	// CORSAllowCredentials lets the Web UI send cookies and TLS client
	// certificates ("include cross-origin credentials"). Default false.
	CORSAllowCredentials bool

	// MaxBodyBytes bounds a request body; larger requests get 413.
	// Default 4 MiB.
	MaxBodyBytes int64
	// MaxPayloads bounds the payloads in one request; more get 413.
	// Default 1,000.
	MaxPayloads int
	// MaxInFlight bounds concurrent encode and decode requests of
	// authenticated callers; beyond it a request gets 503 at once rather
	// than queueing. Default 64.
	MaxInFlight int
	// MaxVerifyInFlight bounds concurrent verifications of JWTs that name
	// a key not yet held, which may wait for the issuer's keys: tokens not
	// yet verified cannot take more, and never take MaxInFlight's places;
	// beyond it they get 503. Default 16.
	MaxVerifyInFlight int
	// MaxKMSCallsPerRequest bounds the KMS calls one decode request may
	// cause (its distinct data keys not cached); more get 429 before any
	// KMS call. Default 16. Applies when Codec implements KMSCallCounter.
	MaxKMSCallsPerRequest int
	// CallerKMSRate is the KMS calls per second each caller may cause on
	// average, CallerKMSBurst the most at once; beyond them a request gets
	// 429 with Retry-After. So no caller can flush the decryption cache
	// or spend the account's KMS quota. Defaults 1 and 64; the burst must
	// be at least MaxKMSCallsPerRequest.
	CallerKMSRate  float64
	CallerKMSBurst int
	// MaxCallers is how many callers' KMS budgets are remembered; the
	// least recently seen beyond it start afresh. Default 10,000.
	MaxCallers int

	// Ready, if set, says whether the server can serve: GET /readyz
	// answers 503 with its error. Default: always ready.
	Ready func() error
	// Logger receives the access log and reload events. Default
	// slog.Default().
	Logger *slog.Logger
	// Metrics, if set, registers the request metrics (MetricHTTPRequests,
	// MetricHTTPRequestDuration). Default: none.
	Metrics prometheus.Registerer
}

// Defaults of Options.
const (
	DefaultMaxBodyBytes             = 4 << 20
	DefaultMaxPayloads              = 1000
	DefaultMaxInFlight              = 64
	DefaultMaxVerifyInFlight        = 16
	DefaultMaxKMSCallsPerRequest    = 16
	DefaultCallerKMSRate            = 1.0
	DefaultCallerKMSBurst           = 64
	DefaultMaxCallers               = 10_000
	DefaultScopedTokenCheckInterval = 5 * time.Second
)

// withDefaults fills in defaults and checks o. It is where the server
// refuses to become an open decryption oracle.
func (o Options) withDefaults() (Options, error) {
	if o.Codec == nil {
		return o, errors.New("codecserver: Options.Codec is required")
	}
	hasAuth := o.StaticToken != "" || o.ScopedTokenFile != "" || o.OIDC != nil
	switch {
	case o.InsecureNoAuth && hasAuth:
		return o, errors.New("codecserver: InsecureNoAuth excludes StaticToken, ScopedTokenFile and OIDC")
	case !o.InsecureNoAuth && !hasAuth:
		return o, errors.New("codecserver: no authentication: set StaticToken, ScopedTokenFile or OIDC (InsecureNoAuth serves without, on loopback only)")
	}
	for _, origin := range o.CORSOrigins {
		if err := CheckOrigin(origin); err != nil {
			return o, fmt.Errorf("codecserver: CORS origin %q: %w", origin, err)
		}
	}
	if o.DefaultNamespace != "" && !namespacePattern.MatchString(o.DefaultNamespace) {
		return o, fmt.Errorf("codecserver: DefaultNamespace %q is not a namespace name", o.DefaultNamespace)
	}
	for _, ns := range o.AllowedNamespaces {
		if !namespacePattern.MatchString(ns) {
			return o, fmt.Errorf("codecserver: AllowedNamespaces: %q is not a namespace name", ns)
		}
	}
	for _, f := range []struct {
		name  string
		value *int
		def   int
	}{
		{"MaxPayloads", &o.MaxPayloads, DefaultMaxPayloads},
		{"MaxInFlight", &o.MaxInFlight, DefaultMaxInFlight},
		{"MaxVerifyInFlight", &o.MaxVerifyInFlight, DefaultMaxVerifyInFlight},
		{"MaxKMSCallsPerRequest", &o.MaxKMSCallsPerRequest, DefaultMaxKMSCallsPerRequest},
		{"CallerKMSBurst", &o.CallerKMSBurst, DefaultCallerKMSBurst},
		{"MaxCallers", &o.MaxCallers, DefaultMaxCallers},
	} {
		if *f.value < 0 {
			return o, fmt.Errorf("codecserver: Options.%s must not be negative", f.name)
		}
		if *f.value == 0 {
			*f.value = f.def
		}
	}
	switch {
	case o.MaxBodyBytes < 0, o.CallerKMSRate < 0, o.ScopedTokenCheckInterval < 0:
		return o, errors.New("codecserver: MaxBodyBytes, CallerKMSRate and ScopedTokenCheckInterval must not be negative")
	case o.CallerKMSBurst < o.MaxKMSCallsPerRequest:
		return o, fmt.Errorf("codecserver: CallerKMSBurst (%d) must be at least MaxKMSCallsPerRequest (%d), or no request could use its whole allowance", o.CallerKMSBurst, o.MaxKMSCallsPerRequest)
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.CallerKMSRate == 0 {
		o.CallerKMSRate = DefaultCallerKMSRate
	}
	if o.ScopedTokenCheckInterval == 0 {
		o.ScopedTokenCheckInterval = DefaultScopedTokenCheckInterval
	}
	if o.OIDC != nil {
		oidc := *o.OIDC
		if err := oidc.validate(); err != nil {
			return o, fmt.Errorf("codecserver: %w", err)
		}
		o.OIDC = &oidc
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// CheckOrigin accepts a browser origin: scheme and host, nothing else.
// "*" is refused: any web page could then have a signed-in operator's
// browser decrypt for it.
func CheckOrigin(o string) error {
	if strings.Contains(o, "*") {
		return errors.New(`wildcards are not allowed; list each Web UI origin`)
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return errors.New("an origin is scheme://host[:port], such as https://temporal.example.com")
	}
	return nil
}

// Validate checks o as New does, without touching the network or the
// file system.
func (o Options) Validate() error {
	_, err := o.withDefaults()
	return err
}
