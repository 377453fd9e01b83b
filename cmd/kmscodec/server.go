package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/rs/cors"
	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
)

// serverConfig is what a codec server enforces; serve fills it from flags
// and tests build it directly.
type serverConfig struct {
	// MaxBodyBytes bounds a request body; larger requests get 413.
	MaxBodyBytes int64
	// MaxPayloads bounds the payloads in one request; more get 413.
	MaxPayloads int
	// MaxInFlight bounds concurrent encode and decode requests; beyond it
	// a request gets 503 at once rather than queueing.
	MaxInFlight int
	// DefaultNamespace is the namespace of a request that names none: the
	// Temporal CLI sends an empty X-Namespace when its user relied on the
	// default namespace. Empty makes such requests fail with 400.
	DefaultNamespace string
	// AllowedNamespaces, if not empty, are the only namespaces served.
	AllowedNamespaces []string
	// AllowUnboundPayloads lets /decode decrypt payloads whose encryption
	// context names no namespace. They cannot be checked against the
	// caller's namespace, so by default they are refused.
	AllowUnboundPayloads bool
	// EnableEncode serves /encode. Off by default: a server that only
	// decodes needs only kms:Decrypt.
	EnableEncode bool
	// CORSOrigins are the Web UI origins allowed to call from a browser.
	CORSOrigins []string
	// CORSAllowCredentials lets the Web UI send cookies and TLS client
	// certificates ("include cross-origin credentials").
	CORSAllowCredentials bool
}

// Defaults of serverConfig, also the flags' defaults.
const (
	defaultMaxBodyBytes = 4 << 20
	defaultMaxPayloads  = 1000
	defaultMaxInFlight  = 64
)

// server is the codec server: an http.Handler for /encode, /decode, their
// /{namespace}/ forms and /healthz, with authentication, limits, CORS and
// access logs.
type server struct {
	codec    *codec.Codec
	auth     authenticator
	cfg      serverConfig
	log      *slog.Logger
	metrics  *httpMetrics // nil without a metrics listener
	inFlight chan struct{}
	allowed  map[string]bool // nil: every namespace
	handler  http.Handler
}

func newServer(c *codec.Codec, auth authenticator, cfg serverConfig, log *slog.Logger, metrics *httpMetrics) *server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = defaultMaxBodyBytes
	}
	if cfg.MaxPayloads <= 0 {
		cfg.MaxPayloads = defaultMaxPayloads
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = defaultMaxInFlight
	}
	s := &server{
		codec:    c,
		auth:     auth,
		cfg:      cfg,
		log:      log,
		metrics:  metrics,
		inFlight: make(chan struct{}, cfg.MaxInFlight),
	}
	if len(cfg.AllowedNamespaces) > 0 {
		s.allowed = map[string]bool{}
		for _, ns := range cfg.AllowedNamespaces {
			s.allowed[ns] = true
		}
	}
	// CORS runs inside the access log and metrics, so that preflights,
	// refused ones too, are logged and counted, and before routing and
	// authentication (browsers send no Authorization on a preflight).
	// Origins are exact: never "*", and so never "*" with credentials.
	s.handler = cors.New(cors.Options{
		AllowedOrigins:   cfg.CORSOrigins,
		AllowedMethods:   []string{http.MethodPost},
		AllowedHeaders:   []string{"Authorization", "Authorization-Extras", "Content-Type", "X-Namespace"},
		AllowCredentials: cfg.CORSAllowCredentials,
		MaxAge:           600,
	}).Handler(http.HandlerFunc(s.routed))
	return s
}

// requestLogKey carries a request's *requestLog through the CORS handler.
type requestLogKey struct{}

// routed routes a request that is not a CORS preflight.
func (s *server) routed(w http.ResponseWriter, r *http.Request) {
	rec := r.Context().Value(requestLogKey{}).(*requestLog)
	rec.route = "other"
	if err := s.route(w, r, rec); err != nil {
		rec.err = err
		writeJSONError(w, err)
	}
}

// requestLog is what the access log says about one request, filled in as
// the request is handled.
type requestLog struct {
	route     string
	namespace string
	subject   string
	payloads  int
	err       *apiError
}

// statusWriter remembers the status sent, for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ServeHTTP implements http.Handler: it handles the request and writes
// its access log line and metrics.
func (s *server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w := &statusWriter{ResponseWriter: rw}
	// The CORS handler answers preflights itself; routed renames the rest.
	rec := &requestLog{route: "preflight"}
	s.handler.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestLogKey{}, rec)))
	if w.status == 0 {
		w.status = http.StatusOK
	}
	elapsed := time.Since(start)
	s.metrics.observe(rec.route, w.status, elapsed)

	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("route", rec.route),
		slog.Int("status", w.status),
		slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
		slog.String("remote", r.RemoteAddr),
	}
	if rec.route == "preflight" {
		// Whether the browser may go on shows in the answer's headers.
		attrs = append(attrs, slog.String("origin", r.Header.Get("Origin")),
			slog.Bool("origin_allowed", w.Header().Get("Access-Control-Allow-Origin") != ""))
	}
	if rec.namespace != "" {
		attrs = append(attrs, slog.String("namespace", rec.namespace))
	}
	if rec.subject != "" {
		attrs = append(attrs, slog.String("subject", rec.subject))
	}
	if rec.payloads > 0 {
		attrs = append(attrs, slog.Int("payloads", rec.payloads))
	}
	level := slog.LevelInfo
	if rec.err != nil {
		attrs = append(attrs, slog.String("error_code", rec.err.Code))
		if rec.err.cause != nil {
			// Causes come from the codec, KMS and the token verifier:
			// they name keys and claims, never payload data or tokens.
			attrs = append(attrs, slog.String("cause", rec.err.cause.Error()))
		}
		if rec.err.Status >= 500 {
			level = slog.LevelError
		}
	}
	if rec.route == "healthz" && rec.err == nil {
		level = slog.LevelDebug // probes every few seconds would drown the log
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// route dispatches a request. It returns the error to send, if any.
func (s *server) route(w http.ResponseWriter, r *http.Request, rec *requestLog) *apiError {
	path := r.URL.Path
	if path == "/healthz" {
		rec.route = "healthz"
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			return errorf(http.StatusMethodNotAllowed, codeMethod, "use GET")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
		return nil
	}

	// /encode, /decode, /{namespace}/encode and /{namespace}/decode.
	var op operation
	var prefix string
	switch {
	case strings.HasSuffix(path, "/decode"):
		op, prefix = opDecode, strings.TrimSuffix(path, "/decode")
	case strings.HasSuffix(path, "/encode"):
		op, prefix = opEncode, strings.TrimSuffix(path, "/encode")
	default:
		return errorf(http.StatusNotFound, codeNotFound, "not found: the codec endpoints are /decode and /encode")
	}
	// The CLI fills "{namespace}" in its endpoint with the namespace it
	// was given, which is empty when the user relied on the default: a
	// path of "//decode" names no namespace.
	pathNamespace := strings.TrimPrefix(prefix, "/")
	if prefix != "" && (!strings.HasPrefix(prefix, "/") || strings.Contains(pathNamespace, "/")) {
		return errorf(http.StatusNotFound, codeNotFound, "not found: the codec endpoints are /decode, /encode, /{namespace}/decode and /{namespace}/encode")
	}
	rec.route = op.String()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return errorf(http.StatusMethodNotAllowed, codeMethod, "use POST")
	}
	if op == opEncode && !s.cfg.EnableEncode {
		return errorf(http.StatusForbidden, codeForbidden, "encoding is disabled on this server")
	}

	// Turn away excess load before spending anything on it.
	select {
	case s.inFlight <- struct{}{}:
		defer func() { <-s.inFlight }()
	default:
		w.Header().Set("Retry-After", "1")
		return errorf(http.StatusServiceUnavailable, codeBusy, "too many requests in flight; retry shortly")
	}

	// Authenticate before reading the body, so an anonymous client cannot
	// make the server read and parse megabytes.
	who, authErr := s.auth.authenticate(r)
	if authErr != nil {
		// RFC 6750: a request without credentials gets the bare challenge.
		challenge := `Bearer realm="kmscodec"`
		if r.Header.Get("Authorization") != "" {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		return authErr
	}
	rec.subject = who.subject

	namespace, nsErr := requestNamespace(r, pathNamespace, s.cfg.DefaultNamespace)
	if nsErr != nil {
		return nsErr
	}
	rec.namespace = namespace
	if s.allowed != nil && !s.allowed[namespace] {
		return errorf(http.StatusForbidden, codeForbidden, "namespace %q is not served here", namespace)
	}
	if !who.allows(namespace, op) {
		need := "read"
		if op == opEncode {
			need = "write"
		}
		return errorf(http.StatusForbidden, codeForbidden, "the token does not grant %s on namespace %q", need, namespace)
	}

	payloads, bodyErr := s.readPayloads(w, r)
	if bodyErr != nil {
		return bodyErr
	}
	rec.payloads = len(payloads)

	var out []*commonpb.Payload
	var err error
	if op == opDecode {
		if e := s.checkBinding(payloads, namespace); e != nil {
			return e
		}
		out, err = s.codec.Decode(payloads)
	} else {
		out, err = s.codec.WithNamespace(namespace).Encode(payloads)
	}
	if err != nil {
		return codecError(err)
	}
	return writePayloads(w, out)
}

// namespacePattern is what a Temporal namespace name may be. Anything
// else is refused before it reaches a log line or a comparison.
var namespacePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)

// requestNamespace is the namespace a request acts in: the path's, or
// the X-Namespace header's (which the Web UI and the CLI send), or else
// fallback. Path and header may both be given only if they agree.
func requestNamespace(r *http.Request, fromPath, fallback string) (string, *apiError) {
	fromHeader := r.Header.Get("X-Namespace")
	ns := fromPath
	switch {
	case fromPath != "" && fromHeader != "" && fromPath != fromHeader:
		return "", errorf(http.StatusBadRequest, codeBadRequest, "the namespace in the path and the X-Namespace header differ")
	case ns == "":
		ns = fromHeader
	}
	if ns == "" {
		ns = fallback
	}
	if ns == "" {
		return "", errorf(http.StatusBadRequest, codeBadRequest, "no namespace: send the X-Namespace header or use /{namespace}/decode")
	}
	if !namespacePattern.MatchString(ns) {
		return "", errorf(http.StatusBadRequest, codeBadRequest, "invalid namespace name")
	}
	return ns, nil
}

// readPayloads reads a {"payloads": [...]} body within the size and count
// limits.
func (s *server) readPayloads(w http.ResponseWriter, r *http.Request) ([]*commonpb.Payload, *apiError) {
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return nil, errorf(http.StatusRequestEntityTooLarge, codeTooLarge, "request body is over the %d-byte limit", s.cfg.MaxBodyBytes)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errorf(http.StatusRequestEntityTooLarge, codeTooLarge, "request body is over the %d-byte limit", s.cfg.MaxBodyBytes)
		}
		return nil, errorf(http.StatusBadRequest, codeBadRequest, "reading the request body failed")
	}
	var msg commonpb.Payloads
	// Unknown fields are dropped rather than refused, so a newer Web UI
	// that adds one still works.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, &msg); err != nil {
		e := errorf(http.StatusBadRequest, codeBadRequest, `the body is not {"payloads": [...]} in protobuf JSON`)
		e.cause = err
		return nil, e
	}
	if n := len(msg.Payloads); n > s.cfg.MaxPayloads {
		return nil, errorf(http.StatusRequestEntityTooLarge, codeTooManyPayloads, "the request has %d payloads, over the limit of %d", n, s.cfg.MaxPayloads)
	}
	for _, p := range msg.Payloads {
		if p == nil {
			return nil, errorf(http.StatusBadRequest, codeBadRequest, "a payload is null")
		}
	}
	return msg.Payloads, nil
}

// checkBinding refuses, before any KMS call, to decrypt a payload bound to
// another namespace than the request's. Without it a token for one
// namespace would decrypt any namespace's payloads that it could get hold
// of, since they share the server's KMS access.
func (s *server) checkBinding(payloads []*commonpb.Payload, namespace string) *apiError {
	for i, p := range payloads {
		env, err := envelope.Parse(p)
		if errors.Is(err, envelope.ErrNotEncrypted) {
			continue // passes through; nothing to protect
		}
		var ctx map[string]string
		if err == nil {
			ctx, err = env.EncryptionContext()
		}
		if err != nil {
			e := errorf(http.StatusBadRequest, codeMalformedPayload, "payload %d is not a valid encrypted payload", i+1)
			e.cause = err
			return e
		}
		bound, ok := ctx[codec.NamespaceContextKey]
		switch {
		case !ok && !s.cfg.AllowUnboundPayloads:
			return errorf(http.StatusForbidden, codeWrongNamespace, "payload %d is not bound to a namespace; this server decrypts only namespace-bound payloads", i+1)
		case ok && bound != namespace:
			return errorf(http.StatusForbidden, codeWrongNamespace, "payload %d belongs to another namespace than %q", i+1, namespace)
		}
	}
	return nil
}

// writePayloads sends the result. An empty list is sent as an empty array
// rather than left out, which is what protojson would do.
func writePayloads(w http.ResponseWriter, payloads []*commonpb.Payload) *apiError {
	body := []byte(`{"payloads":[]}`)
	if len(payloads) > 0 {
		var err error
		body, err = protojson.Marshal(&commonpb.Payloads{Payloads: payloads})
		if err != nil {
			e := errorf(http.StatusInternalServerError, codeInternal, "internal error")
			e.cause = err
			return e
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// Decrypted data must not linger in browser or proxy caches.
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(append(body, '\n'))
	return nil
}
