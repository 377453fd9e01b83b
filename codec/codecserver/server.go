// Package codecserver is a Temporal codec server: the HTTP endpoints
// /decode and /encode (and /{namespace}/decode, /{namespace}/encode)
// that the Temporal Web UI and CLI call to show payloads a PayloadCodec
// encrypted, with authentication, per-namespace authorization, CORS,
// limits on size, concurrency and KMS calls, an access log and metrics.
//
// Build one with [New] and mount it where an http.Handler goes; it also
// answers GET /healthz (up) and GET /readyz (able to serve).
package codecserver

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/rs/cors"
	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// Server is a codec server. It is an http.Handler, safe for concurrent
// use, and starts no goroutine: files it watches are looked at when a
// request needs them.
type Server struct {
	opts      Options
	log       *slog.Logger
	metrics   *httpMetrics
	inFlight  semaphore // requests of authenticated callers
	verifying semaphore // JWT verifications
	callers   *callerLimits
	allowed   map[string]bool // nil: every namespace

	static *staticToken  // nil without Options.StaticToken
	scoped *scopedTokens // nil without Options.ScopedTokenFile
	oidc   *oidcVerifier // nil without Options.OIDC
	routes http.Handler  // the routes, inside CORS when origins are set
}

var _ http.Handler = (*Server)(nil)

// New checks opts and returns a Server. With OIDC and no JWKSURL it
// fetches the issuer's discovery document, so that a wrong issuer fails
// here rather than at the first request.
func New(opts Options) (*Server, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		inFlight:  make(semaphore, opts.MaxInFlight),
		verifying: make(semaphore, opts.MaxVerifyInFlight),
	}
	if s.metrics, err = newHTTPMetrics(opts.Metrics); err != nil {
		return nil, fmt.Errorf("codecserver: metrics: %w", err)
	}
	if s.callers, err = newCallerLimits(opts.CallerKMSRate, opts.CallerKMSBurst, opts.MaxCallers); err != nil {
		return nil, fmt.Errorf("codecserver: %w", err)
	}
	if len(opts.AllowedNamespaces) > 0 {
		s.allowed = map[string]bool{}
		for _, ns := range opts.AllowedNamespaces {
			s.allowed[ns] = true
		}
	}
	if opts.StaticToken != "" {
		if s.static, err = newStaticToken(opts.StaticToken); err != nil {
			return nil, fmt.Errorf("codecserver: %w", err)
		}
	}
	if opts.ScopedTokenFile != "" {
		if s.scoped, err = loadScopedTokens(opts.ScopedTokenFile, opts.ScopedTokenCheckInterval, s.log); err != nil {
			return nil, fmt.Errorf("codecserver: %w", err)
		}
	}
	if opts.OIDC != nil {
		if s.oidc, err = newOIDCVerifier(context.Background(), *opts.OIDC); err != nil {
			return nil, fmt.Errorf("codecserver: %w", err)
		}
	}
	s.routes = http.HandlerFunc(s.routed)
	if len(opts.CORSOrigins) > 0 {
		// Without origins no CORS handler runs at all: rs/cors would take
		// an empty list as "every origin". CORS runs inside the access
		// log and metrics, so that preflights, refused ones too, are
		// logged and counted, and before authentication (browsers send no
		// Authorization on a preflight). Origins are exact: never "*".
		s.routes = cors.New(cors.Options{
			AllowedOrigins:   opts.CORSOrigins,
			AllowedMethods:   []string{http.MethodPost},
			AllowedHeaders:   []string{"Authorization", "Authorization-Extras", "Content-Type", "X-Namespace"},
			AllowCredentials: opts.CORSAllowCredentials,
			MaxAge:           600,
		}).Handler(s.routes)
	}
	return s, nil
}

// Handler returns s as an http.Handler, for symmetry with servers that
// are not one.
func (s *Server) Handler() http.Handler { return s }

// requestLog is what the access log says about one request, filled in as
// the request is handled.
type requestLog struct {
	route     string
	namespace string
	subject   string
	payloads  int
	kmsCalls  int
	err       *apiError
}

// requestLogKey carries a request's *requestLog through the CORS handler.
type requestLogKey struct{}

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
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w := &statusWriter{ResponseWriter: rw}
	// The CORS handler answers preflights itself; routed renames the rest.
	rec := &requestLog{route: "preflight"}
	s.routes.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestLogKey{}, rec)))
	if w.status == 0 {
		w.status = http.StatusOK
	}
	elapsed := time.Since(start)
	s.metrics.observe(rec.route, w.status, elapsed)
	s.logRequest(r, rec, w, elapsed)
}

func (s *Server) logRequest(r *http.Request, rec *requestLog, w *statusWriter, elapsed time.Duration) {
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
	if rec.kmsCalls > 0 {
		attrs = append(attrs, slog.Int("kms_calls_planned", rec.kmsCalls))
	}
	level := slog.LevelInfo
	if rec.err != nil {
		attrs = append(attrs, slog.String("error_code", rec.err.Code))
		if rec.err.cause != nil {
			// Causes come from the codec, KMS, the token verifier and the
			// body parser, which is made to say where, never what: they
			// name keys and claims, never payload data or tokens.
			attrs = append(attrs, slog.String("cause", rec.err.cause.Error()))
		}
		if rec.err.Status >= 500 {
			level = slog.LevelError
		}
	}
	if (rec.route == "healthz" || rec.route == "readyz") && rec.err == nil {
		level = slog.LevelDebug // probes every few seconds would drown the log
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// routed handles a request that is not a CORS preflight.
func (s *Server) routed(w http.ResponseWriter, r *http.Request) {
	rec := r.Context().Value(requestLogKey{}).(*requestLog)
	rec.route = "other"
	if err := s.route(w, r, rec); err != nil {
		rec.err = err
		writeJSONError(w, err)
	}
}

// route dispatches a request. It returns the error to send, if any.
func (s *Server) route(w http.ResponseWriter, r *http.Request, rec *requestLog) *apiError {
	if s.opts.InsecureNoAuth {
		if err := checkLoopbackHost(r, s.opts.LoopbackPort); err != nil {
			return err
		}
	}
	switch r.URL.Path {
	case "/healthz":
		rec.route = "healthz"
		return probe(w, r, nil)
	case "/readyz":
		rec.route = "readyz"
		return probe(w, r, s.opts.Ready)
	}
	op, pathNamespace, err := codecRoute(r.URL.Path)
	if err != nil {
		return err
	}
	rec.route = op.String()
	if err := s.checkRequest(r, op); err != nil {
		return err
	}
	return s.serveCodec(w, r, rec, op, pathNamespace)
}

// probe answers /healthz (ready nil) and /readyz.
func probe(w http.ResponseWriter, r *http.Request, ready func() error) *apiError {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return errorf(http.StatusMethodNotAllowed, codeMethod, "use GET")
	}
	if ready != nil {
		if err := ready(); err != nil {
			return errorf(http.StatusServiceUnavailable, codeUnavailable, "not ready: %v", err)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	return nil
}

// codecRoute parses /encode, /decode, /{namespace}/encode and
// /{namespace}/decode.
func codecRoute(path string) (operation, string, *apiError) {
	var op operation
	var prefix string
	switch {
	case strings.HasSuffix(path, "/decode"):
		op, prefix = opDecode, strings.TrimSuffix(path, "/decode")
	case strings.HasSuffix(path, "/encode"):
		op, prefix = opEncode, strings.TrimSuffix(path, "/encode")
	default:
		return 0, "", errorf(http.StatusNotFound, codeNotFound, "not found: the codec endpoints are /decode and /encode")
	}
	// The CLI fills "{namespace}" in its endpoint with the namespace it
	// was given, which is empty when the user relied on the default: a
	// path of "//decode" names no namespace.
	pathNamespace := strings.TrimPrefix(prefix, "/")
	if prefix != "" && (!strings.HasPrefix(prefix, "/") || strings.Contains(pathNamespace, "/")) {
		return 0, "", errorf(http.StatusNotFound, codeNotFound, "not found: the codec endpoints are /decode, /encode, /{namespace}/decode and /{namespace}/encode")
	}
	return op, pathNamespace, nil
}

// checkRequest refuses what no caller may send: another method than
// POST, encoding on a server that does not, and a body that is not
// declared JSON. A browser sends a cross-origin request that is not JSON
// ("simple": a form's text/plain) without asking the server first, so
// refusing it keeps every cross-origin request behind a CORS preflight.
func (s *Server) checkRequest(r *http.Request, op operation) *apiError {
	if r.Method != http.MethodPost {
		e := errorf(http.StatusMethodNotAllowed, codeMethod, "use POST")
		e.header = [2]string{"Allow", "POST"}
		return e
	}
	if op == opEncode && !s.opts.EnableEncode {
		return errorf(http.StatusForbidden, codeForbidden, "encoding is disabled on this server")
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, codeMediaType, "send the body as Content-Type: application/json")
	}
	return nil
}

// serveCodec runs a codec request through its steps: authenticate, take
// a place among the requests in flight, check the namespace, read the
// body, spend the caller's KMS budget, and run the codec.
func (s *Server) serveCodec(w http.ResponseWriter, r *http.Request, rec *requestLog, op operation, pathNamespace string) *apiError {
	who, err := s.authenticate(r)
	if err != nil {
		return err
	}
	rec.subject = who.subject

	if !s.inFlight.tryAcquire() {
		return busy("requests")
	}
	defer s.inFlight.release()

	namespace, err := s.authorizeNamespace(r, who, op, pathNamespace)
	if err != nil {
		return err
	}
	rec.namespace = namespace

	payloads, err := s.readPayloads(w, r)
	if err != nil {
		return err
	}
	rec.payloads = len(payloads)

	var out []*commonpb.Payload
	var codecErr error
	if op == opDecode {
		if err := s.spendKMSBudget(who, namespace, payloads, rec); err != nil {
			return err
		}
		out, codecErr = s.opts.Codec.Decode(r.Context(), namespace, payloads)
	} else {
		out, codecErr = s.opts.Codec.Encode(r.Context(), namespace, payloads)
	}
	if codecErr != nil {
		return codecError(codecErr)
	}
	return writePayloads(w, out)
}

// authenticate checks the request's credentials, in order of cost: the
// static token, scoped tokens, then a JWT. Verifying a JWT that names a
// key not yet held may wait for the issuer's keys, so it takes a place
// among MaxVerifyInFlight, never one of the places of authenticated
// requests.
func (s *Server) authenticate(r *http.Request) (*principal, *apiError) {
	if s.opts.InsecureNoAuth {
		return &principal{subject: "anonymous", any: true}, nil
	}
	p, err := s.checkToken(r)
	if err != nil {
		// RFC 6750: a request without credentials gets the bare challenge.
		challenge := `Bearer realm="kmscodec"`
		if r.Header.Get("Authorization") != "" {
			challenge += `, error="invalid_token"`
		}
		if err.Status == http.StatusUnauthorized {
			err.header = [2]string{"WWW-Authenticate", challenge}
		}
		return nil, err
	}
	return p, nil
}

func (s *Server) checkToken(r *http.Request) (*principal, *apiError) {
	token, err := bearerToken(r)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(token))
	if s.static != nil && s.static.matches(sum) {
		return &principal{subject: "static-token", any: true}, nil
	}
	if s.scoped != nil {
		if p := s.scoped.match(sum); p != nil {
			return p, nil
		}
	}
	if s.oidc != nil && strings.Count(token, ".") == 2 {
		// Only a token naming a key not held may wait for the issuer;
		// the rest verify at once, with no place to take.
		if s.oidc.keys.mayFetch(token) {
			if !s.verifying.tryAcquire() {
				return nil, busy("token verifications")
			}
			defer s.verifying.release()
		}
		return s.oidc.verify(r.Context(), token)
	}
	return nil, unauthenticated("invalid token", errors.New("the bearer token is none this server accepts"))
}

// namespacePattern is what a Temporal namespace name may be. Anything
// else is refused before it reaches a log line or a comparison.
var namespacePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)

// authorizeNamespace returns the namespace the request acts in, once the
// server serves it and the caller may act there.
func (s *Server) authorizeNamespace(r *http.Request, who *principal, op operation, pathNamespace string) (string, *apiError) {
	namespace, err := requestNamespace(r, pathNamespace, s.opts.DefaultNamespace)
	if err != nil {
		return "", err
	}
	if s.allowed != nil && !s.allowed[namespace] {
		return "", errorf(http.StatusForbidden, codeForbidden, "namespace %q is not served here", namespace)
	}
	need := "read"
	if op == opEncode {
		need = "write"
	}
	if who.identity != "" {
		authz := s.opts.OIDC.NamespaceAuthorizer
		if err := authz.AuthorizeNamespace(r.Context(), who.identity, namespace, op == opEncode); err != nil {
			if unavailable(err) {
				e := errorf(http.StatusServiceUnavailable, codeUnavailable, "cannot check access to namespace %q now; retry shortly", namespace)
				e.cause, e.retryAfter = err, 5
				return "", e
			}
			e := errorf(http.StatusForbidden, codeForbidden, "the caller may not %s namespace %q", need, namespace)
			e.cause = err
			return "", e
		}
		return namespace, nil
	}
	if !who.allows(namespace, op) {
		return "", errorf(http.StatusForbidden, codeForbidden, "the token does not grant %s on namespace %q", need, namespace)
	}
	return namespace, nil
}

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
func (s *Server) readPayloads(w http.ResponseWriter, r *http.Request) ([]*commonpb.Payload, *apiError) {
	limit := s.opts.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, errorf(http.StatusRequestEntityTooLarge, codeTooLarge, "request body is over the %d-byte limit", limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errorf(http.StatusRequestEntityTooLarge, codeTooLarge, "request body is over the %d-byte limit", limit)
		}
		return nil, errorf(http.StatusBadRequest, codeBadRequest, "reading the request body failed")
	}
	var msg commonpb.Payloads
	// Unknown fields are dropped rather than refused, so a newer Web UI
	// that adds one still works.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, &msg); err != nil {
		e := errorf(http.StatusBadRequest, codeBadRequest, `the body is not {"payloads": [...]} in protobuf JSON`)
		e.cause = bodyError(body)
		return nil, e
	}
	if n := len(msg.Payloads); n > s.opts.MaxPayloads {
		return nil, errorf(http.StatusRequestEntityTooLarge, codeTooManyPayloads, "the request has %d payloads, over the limit of %d", n, s.opts.MaxPayloads)
	}
	for _, p := range msg.Payloads {
		if p == nil {
			return nil, errorf(http.StatusBadRequest, codeBadRequest, "a payload is null")
		}
	}
	return msg.Payloads, nil
}

// bodyError says what is wrong with a body protojson refused, for the
// log, without what protojson's error says: it quotes the offending
// value, which may be plaintext. It gives the class of error and, for
// invalid JSON, the byte offset.
func bodyError(body []byte) error {
	var v any
	err := json.Unmarshal(body, &v)
	var syntax *json.SyntaxError
	switch {
	case len(body) == 0:
		return errors.New("empty body")
	case errors.As(err, &syntax):
		return fmt.Errorf("invalid JSON at byte %d", syntax.Offset)
	case err != nil:
		return errors.New("invalid JSON")
	}
	return errors.New(`JSON that is not {"payloads": [...]} of protobuf JSON payloads`)
}

// spendKMSBudget refuses a decode that would cost more KMS calls than one
// request may, or than the caller has left, before any KMS call. Only a
// Codec that implements KMSCallCounter can be held to a budget.
func (s *Server) spendKMSBudget(who *principal, namespace string, payloads []*commonpb.Payload, rec *requestLog) *apiError {
	counter, ok := s.opts.Codec.(KMSCallCounter)
	if !ok {
		return nil
	}
	n, err := counter.KMSCallsToDecode(namespace, payloads)
	if err != nil {
		return codecError(err)
	}
	rec.kmsCalls = n
	if n > s.opts.MaxKMSCallsPerRequest {
		return errorf(http.StatusTooManyRequests, codeTooManyDataKeys,
			"the payloads are under %d data keys not in the cache, over the limit of %d KMS calls per request; send fewer payloads per request", n, s.opts.MaxKMSCallsPerRequest)
	}
	return s.callers.take(who.subject, n)
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
