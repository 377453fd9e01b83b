package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/codec/codecserver"
)

// serveFlags are the flags of kmscodec serve.
type serveFlags struct {
	kms    kmsFlags
	legacy legacyFlags
	cloud  cloudFlags

	listen            string
	tlsCert           string
	tlsKey            string
	allowPlaintext    bool
	insecureNoAuth    bool
	authTokenFile     string
	scopedTokenFile   string
	oidcIssuer        string
	oidcAudience      string
	oidcClaim         string
	oidcIdentityClaim string
	oidcJWKSURL       string
	oidcJWKSRefresh   time.Duration
	namespaces        []string
	defaultNS         string
	allowUnbound      bool
	enableEncode      bool
	corsOrigins       []string
	corsCredentials   bool
	maxBodyBytes      int64
	maxPayloads       int
	maxInFlight       int
	maxKMSPerRequest  int
	callerKMSRate     float64
	callerKMSBurst    int
	readyKMSFailures  int
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	shutdownTimeout   time.Duration
	metricsListen     string
	readyFile         string
	logFormat         string
	logLevel          string
}

// authTokenEnv holds the static bearer token itself. It has no flag: a
// flag's value shows in the process list.
const authTokenEnv = "KMSCODEC_AUTH_TOKEN"

func (a *app) serveCommand() *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a codec server for the Temporal Web UI and CLI",
		Long: `Run an HTTP codec server that decrypts payloads for the Temporal Web UI
and CLI (POST /decode) and, with --enable-encode, encrypts them (POST
/encode). Both are also served under /{namespace}/ and take only
Content-Type: application/json. GET /healthz answers when the server is
up, GET /readyz when KMS answers too.

Every request must carry 'Authorization: Bearer <token>': a static token
(--auth-token-file or $KMSCODEC_AUTH_TOKEN), a token listed by hash with
its namespaces in --scoped-token-file (see 'kmscodec hash-token'), or a
JWT access token from an OIDC issuer (--oidc-issuer, --oidc-audience)
whose permissions claim grants "<namespace>:read" (decode) or
"<namespace>:write" (encode). A payload bound to another namespace than
the request's is refused. --insecure-no-auth serves without
authentication, on loopback only, and only to requests addressed to a
loopback name.

A decode request may cause at most --max-kms-calls-per-request KMS calls
(one per data key not cached), and each caller --caller-kms-rate calls a
second (--caller-kms-burst at once); beyond them it gets 429.

Serve over TLS (--tls-cert, --tls-key; both files are read again when
they change) anywhere but loopback: tokens and decrypted payloads cross
the network. Behind a TLS-terminating proxy, set --allow-plaintext.`,
		Example: `  # Decode for the Temporal CLI and scripts, with a static token:
  export KMSCODEC_AUTH_TOKEN=$(openssl rand -hex 32)
  kmscodec serve --listen 0.0.0.0:8443 \
    --tls-cert server.crt --tls-key server.key \
    --key-id arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab
  temporal workflow show -w my-workflow --codec-endpoint https://codec.example.com:8443 \
    --codec-auth "Bearer $KMSCODEC_AUTH_TOKEN"

  # Tokens limited to namespaces:
  openssl rand -hex 32 | tee payments.token | kmscodec hash-token | sed 's/$/ payments/' >> tokens.txt
  kmscodec serve --scoped-token-file tokens.txt --listen 0.0.0.0:8443 ...

  # Decode for the Web UI at https://temporal.example.com, which passes
  # its users' access tokens (TEMPORAL_CODEC_PASS_ACCESS_TOKEN=true); the
  # UI cannot send a static token:
  kmscodec serve --listen 0.0.0.0:8443 \
    --tls-cert server.crt --tls-key server.key \
    --key-id arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab \
    --oidc-issuer https://login.example.com/ --oidc-audience temporal-codec \
    --cors-origin https://temporal.example.com

  # Local development with the CLI:
  kmscodec serve --insecure-no-auth --key-id alias/temporal
  temporal workflow show -w my-workflow --codec-endpoint http://127.0.0.1:8081`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.applyEnv(cmd); err != nil {
				return err
			}
			return a.runServe(cmd, f)
		},
	}
	f.register(cmd.Flags())
	return cmd
}

// register defines serve's flags on fs.
func (f *serveFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8081", "address to listen on; port 0 picks a free one (see --ready-file)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate file (PEM), read again when it changes; required with --tls-key")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS private key file (PEM), read again when it changes")
	fs.BoolVar(&f.allowPlaintext, "allow-plaintext", false, "serve plain HTTP on a non-loopback address, for use behind a TLS-terminating proxy")
	fs.BoolVar(&f.insecureNoAuth, "insecure-no-auth", false, "serve without authentication (loopback addresses only, and only to requests addressed to a loopback name; for local development)")
	fs.StringVar(&f.authTokenFile, "auth-token-file", "", "file holding the static bearer token (or set $"+authTokenEnv+")")
	fs.StringVar(&f.scopedTokenFile, "scoped-token-file", "", `file of lines "sha256:<hex of the token's SHA-256> <namespace>[,<namespace>...]" ("*" for all); read again when it changes`)
	fs.StringVar(&f.oidcIssuer, "oidc-issuer", "", "OIDC issuer URL whose JWT access tokens are accepted")
	fs.StringVar(&f.oidcAudience, "oidc-audience", "", "audience (aud) the access tokens must carry; required with --oidc-issuer")
	fs.StringVar(&f.oidcClaim, "oidc-permissions-claim", codecserver.DefaultPermissionsClaim, `token claim listing "<namespace>:<role>" permissions`)
	fs.StringVar(&f.oidcIdentityClaim, "oidc-identity-claim", "", "token claim naming the caller to a namespace authorizer (such as Temporal Cloud's https://saas-api.tmprl.cloud/user/email)")
	fs.StringVar(&f.oidcJWKSURL, "oidc-jwks-url", "", "URL of the issuer's signing keys (default: the jwks_uri of its discovery document)")
	fs.DurationVar(&f.oidcJWKSRefresh, "oidc-jwks-min-refresh", codecserver.DefaultJWKSMinRefresh, "least time between two fetches of the issuer's signing keys")
	fs.StringVar(&f.defaultNS, "default-namespace", "default", `namespace of a request that names none, as the Temporal CLI's requests do when it runs in its default namespace ("" refuses them)`)
	fs.StringSliceVar(&f.namespaces, "allowed-namespace", nil, "namespace to serve; if given, all others are refused (repeatable)")
	fs.BoolVar(&f.allowUnbound, "allow-unbound-payloads", false, "decrypt payloads whose encryption context names no namespace (they cannot be checked against the caller's namespace)")
	fs.BoolVar(&f.enableEncode, "enable-encode", false, "serve /encode (needs kms:GenerateDataKey on --key-id)")
	fs.StringSliceVar(&f.corsOrigins, "cors-origin", nil, "Web UI origin allowed to call from a browser, such as https://temporal.example.com (repeatable; none: no browser on another origin may call)")
	fs.BoolVar(&f.corsCredentials, "cors-allow-credentials", false, `allow browsers to send credentials (the Web UI's "include cross-origin credentials")`)
	fs.Int64Var(&f.maxBodyBytes, "max-body-bytes", codecserver.DefaultMaxBodyBytes, "largest request body accepted")
	fs.IntVar(&f.maxPayloads, "max-payloads", codecserver.DefaultMaxPayloads, "most payloads accepted in one request")
	fs.IntVar(&f.maxInFlight, "max-in-flight", codecserver.DefaultMaxInFlight, "most encode and decode requests of authenticated callers handled at once; more get 503")
	fs.IntVar(&f.maxKMSPerRequest, "max-kms-calls-per-request", codecserver.DefaultMaxKMSCallsPerRequest, "most KMS calls (data keys not cached) one decode request may cause; more get 429")
	fs.Float64Var(&f.callerKMSRate, "caller-kms-rate", codecserver.DefaultCallerKMSRate, "KMS calls per second each caller may cause on average; more get 429 with Retry-After")
	fs.IntVar(&f.callerKMSBurst, "caller-kms-burst", codecserver.DefaultCallerKMSBurst, "KMS calls each caller may cause at once (at least --max-kms-calls-per-request)")
	fs.IntVar(&f.readyKMSFailures, "ready-kms-failures", 3, "/readyz fails after this many KMS calls in a row failed")
	fs.DurationVar(&f.readTimeout, "read-timeout", 30*time.Second, "time allowed to read a request")
	fs.DurationVar(&f.writeTimeout, "write-timeout", 60*time.Second, "time allowed to handle a request and write the response; work stops when it passes")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 2*time.Minute, "time an idle keep-alive connection is kept")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 20*time.Second, "time allowed for requests in flight to finish on SIGTERM or SIGINT")
	fs.StringVar(&f.metricsListen, "metrics-listen", "", "address to serve Prometheus /metrics on (default: no metrics)")
	fs.StringVar(&f.readyFile, "ready-file", "", `file to write, once listening, as {"url": ..., "metrics_url": ...}`)
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.kms.register(fs, true)
	f.legacy.register(fs)
	f.cloud.register(fs)
	bindEnv(fs, nil)
}

// serveConfig is serve's flags, checked and loaded.
type serveConfig struct {
	flags       *serveFlags
	staticToken string
	logger      *slog.Logger
	// authorizer decides namespaces for verified tokens in Temporal Cloud
	// mode; runServe connects it.
	authorizer codecserver.NamespaceAuthorizer
}

// checkServeFlags validates the flags without touching the network. It is
// where the server refuses to become an open decryption oracle; what the
// codec server's options check besides is checked again by
// codecserver.Options.Validate.
func (a *app) checkServeFlags(cmd *cobra.Command, f *serveFlags) (*serveConfig, error) {
	cfg := &serveConfig{flags: f}
	logger, err := newLogger(a.stderr, f.logFormat, f.logLevel)
	if err != nil {
		return nil, usagef(cmd, "%v", err)
	}
	cfg.logger = logger

	host, _, err := net.SplitHostPort(f.listen)
	if err != nil {
		return nil, usagef(cmd, "--listen %q: %v", f.listen, err)
	}
	loopback := codecserver.IsLoopbackHost(host)

	if cfg.staticToken, err = a.checkAuthFlags(cmd, f, loopback); err != nil {
		return nil, err
	}
	if err := f.cloud.check(cmd, f); err != nil {
		return nil, err
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, usagef(cmd, "--tls-cert and --tls-key go together")
	}
	if f.tlsCert == "" && !loopback && !f.allowPlaintext {
		return nil, usagef(cmd, "refusing to serve plain HTTP on %q: bearer tokens and decrypted payloads would cross the network in the clear; set --tls-cert and --tls-key, or --allow-plaintext behind a TLS-terminating proxy", f.listen)
	}
	for _, o := range f.corsOrigins {
		if err := codecserver.CheckOrigin(o); err != nil {
			return nil, usagef(cmd, "--cors-origin %q: %v", o, err)
		}
	}
	switch {
	case f.maxBodyBytes <= 0, f.maxPayloads <= 0, f.maxInFlight <= 0, f.maxKMSPerRequest <= 0, f.callerKMSRate <= 0, f.callerKMSBurst <= 0:
		return nil, usagef(cmd, "--max-body-bytes, --max-payloads, --max-in-flight, --max-kms-calls-per-request, --caller-kms-rate and --caller-kms-burst must be positive")
	case f.readyKMSFailures <= 0:
		return nil, usagef(cmd, "--ready-kms-failures must be positive")
	case f.readTimeout <= 0, f.writeTimeout <= 0, f.idleTimeout <= 0, f.shutdownTimeout <= 0, f.oidcJWKSRefresh <= 0:
		return nil, usagef(cmd, "timeouts and --oidc-jwks-min-refresh must be positive")
	}
	if f.metricsListen != "" {
		if _, _, err := net.SplitHostPort(f.metricsListen); err != nil {
			return nil, usagef(cmd, "--metrics-listen %q: %v", f.metricsListen, err)
		}
	}
	if err := f.kms.validate(cmd, f.enableEncode); err != nil {
		return nil, err
	}
	// The codec server's own checks (namespace names, the KMS burst
	// against the per-request limit, the issuer URL...), still offline.
	if err := cfg.serverOptions(nil, nil, nil, "").Validate(); err != nil {
		return nil, usagef(cmd, "%s", strings.TrimPrefix(err.Error(), "codecserver: "))
	}
	return cfg, nil
}

// checkAuthFlags checks that some authentication is configured, and only
// where it may be, and returns the static token, if any.
func (a *app) checkAuthFlags(cmd *cobra.Command, f *serveFlags, loopback bool) (string, error) {
	tokenValue, _ := a.lookupEnv(authTokenEnv)
	tokenSet := tokenValue != ""
	hasStatic := f.authTokenFile != "" || tokenSet
	hasOIDC := f.oidcIssuer != ""
	hasAuth := hasStatic || hasOIDC || f.scopedTokenFile != ""
	switch {
	case f.insecureNoAuth && hasAuth:
		return "", usagef(cmd, "--insecure-no-auth conflicts with the authentication configured (static token, --scoped-token-file or --oidc-issuer)")
	case f.insecureNoAuth && !loopback:
		return "", usagef(cmd, "refusing --insecure-no-auth on %q: without authentication the server would decrypt for anyone who can reach it; listen on 127.0.0.1 or ::1", f.listen)
	case !f.insecureNoAuth && !hasAuth:
		return "", usagef(cmd, "no authentication configured: set --auth-token-file or $%s (a static bearer token), --scoped-token-file, or --oidc-issuer with --oidc-audience; --insecure-no-auth serves without authentication on loopback only", authTokenEnv)
	case f.authTokenFile != "" && tokenSet:
		return "", usagef(cmd, "set either --auth-token-file or $%s, not both", authTokenEnv)
	case hasOIDC && f.oidcAudience == "":
		return "", usagef(cmd, "--oidc-issuer needs --oidc-audience: without an audience check, a token minted for any other application would be accepted")
	case !hasOIDC && (f.oidcAudience != "" || f.oidcJWKSURL != "" || f.oidcIdentityClaim != ""):
		return "", usagef(cmd, "--oidc-audience, --oidc-jwks-url and --oidc-identity-claim need --oidc-issuer")
	}
	if hasStatic {
		if f.authTokenFile != "" {
			b, err := os.ReadFile(f.authTokenFile)
			if err != nil {
				return "", usagef(cmd, "reading --auth-token-file: %v", err)
			}
			tokenValue = string(b)
		}
		if n := len(strings.TrimSpace(tokenValue)); n < codecserver.MinTokenLength {
			return "", usagef(cmd, "the static token is %d characters; use at least %d random ones (e.g. 'openssl rand -hex 32')", n, codecserver.MinTokenLength)
		}
		return strings.TrimSpace(tokenValue), nil
	}
	return "", nil
}

// serverOptions maps the flags onto codecserver.Options.
func (cfg *serveConfig) serverOptions(c *codec.Codec, reg prometheus.Registerer, ready func() error, port string) codecserver.Options {
	f := cfg.flags
	opts := codecserver.Options{
		Codec:                 codecserver.KMSCodec{Codec: c, AllowUnboundPayloads: f.allowUnbound},
		StaticToken:           cfg.staticToken,
		ScopedTokenFile:       f.scopedTokenFile,
		InsecureNoAuth:        f.insecureNoAuth,
		LoopbackPort:          port,
		DefaultNamespace:      f.defaultNS,
		AllowedNamespaces:     f.namespaces,
		EnableEncode:          f.enableEncode,
		CORSOrigins:           f.corsOrigins,
		CORSAllowCredentials:  f.corsCredentials,
		MaxBodyBytes:          f.maxBodyBytes,
		MaxPayloads:           f.maxPayloads,
		MaxInFlight:           f.maxInFlight,
		MaxKMSCallsPerRequest: f.maxKMSPerRequest,
		CallerKMSRate:         f.callerKMSRate,
		CallerKMSBurst:        f.callerKMSBurst,
		Ready:                 ready,
		Logger:                cfg.logger,
		Metrics:               reg,
	}
	if f.oidcIssuer != "" {
		opts.OIDC = &codecserver.OIDCOptions{
			Issuer:           f.oidcIssuer,
			Audience:         f.oidcAudience,
			PermissionsClaim: f.oidcClaim,
			IdentityClaim:    f.oidcIdentityClaim,
			JWKSURL:          f.oidcJWKSURL,
			JWKSMinRefresh:   f.oidcJWKSRefresh,
			// Temporal Cloud mode; nil otherwise.
			NamespaceAuthorizer: cfg.authorizer,
		}
	}
	return opts
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use json or text", format)
}

// listeners are the server's open sockets and what is served on them.
type listeners struct {
	main, metrics       net.Listener
	mainSrv, metricsSrv *http.Server
	ready               readyInfo
}

func (l *listeners) close() {
	l.mainSrv.Close()
	if l.metricsSrv != nil {
		l.metricsSrv.Close()
	}
}

func (a *app) runServe(cmd *cobra.Command, f *serveFlags) error {
	cfg, err := a.checkServeFlags(cmd, f)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	log := cfg.logger

	api, err := f.kms.client(ctx)
	if err != nil {
		return err
	}
	health := newKMSHealth(api, f.readyKMSFailures, probeKeyID(&f.kms), log)
	opts := f.kms.codecOptions(health, f.enableEncode)
	if err := f.legacy.apply(&opts); err != nil {
		return &usageError{cmd: cmd.CommandPath(), err: err}
	}
	c, err := codec.New(opts)
	if err != nil {
		return &usageError{cmd: cmd.CommandPath(), err: err}
	}
	authz, err := f.cloud.authorizer(cmd, a.lookupEnv)
	if err != nil {
		return err
	}
	if authz != nil {
		defer authz.Close()
		cfg.authorizer = authz
	}
	ls, err := a.listen(cmd, cfg)
	if err != nil {
		return err
	}
	var reg prometheus.Registerer // an interface: a nil *Registry would not be nil
	if ls.metricsSrv != nil {
		r := metricsRegistry(c)
		ls.metricsSrv.Handler = metricsHandler(r)
		reg = r
	}
	_, port, _ := net.SplitHostPort(ls.main.Addr().String())
	srv, err := codecserver.New(cfg.serverOptions(c, reg, health.ready, port))
	if err != nil {
		ls.main.Close()
		if ls.metrics != nil {
			ls.metrics.Close()
		}
		return err
	}
	ls.mainSrv.Handler = withDeadline(srv, f.writeTimeout)
	go health.probe(ctx, 5*time.Second)
	return serveUntilDone(ctx, cfg, ls)
}

// withDeadline gives each request a context that ends with the write
// timeout, as the client stops listening then: the codec server stops
// its work (between KMS calls) once nobody can receive the result.
func withDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// listen opens the server's sockets: the main one, with TLS when
// configured, and the metrics one.
func (a *app) listen(cmd *cobra.Command, cfg *serveConfig) (*listeners, error) {
	f := cfg.flags
	ls := &listeners{mainSrv: &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       f.readTimeout,
		WriteTimeout:      f.writeTimeout,
		IdleTimeout:       f.idleTimeout,
		// JWTs with many permissions are large, but not megabytes.
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(cfg.logger.Handler(), slog.LevelWarn),
	}}
	scheme := "http"
	if f.tlsCert != "" {
		certs, err := newCertReloader(f.tlsCert, f.tlsKey, certCheckInterval, cfg.logger)
		if err != nil {
			return nil, &usageError{cmd: cmd.CommandPath(), err: fmt.Errorf("loading TLS certificate: %w", err)}
		}
		ls.mainSrv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.getCertificate}
		scheme = "https"
	}
	var err error
	if f.metricsListen != "" {
		if ls.metrics, err = net.Listen("tcp", f.metricsListen); err != nil {
			return nil, fmt.Errorf("metrics listener: %w", err)
		}
		ls.metricsSrv = &http.Server{
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       f.readTimeout,
			WriteTimeout:      f.writeTimeout,
			IdleTimeout:       f.idleTimeout,
		}
		ls.ready.MetricsURL = "http://" + ls.metrics.Addr().String() + "/metrics"
	}
	if ls.main, err = net.Listen("tcp", f.listen); err != nil {
		if ls.metrics != nil {
			ls.metrics.Close()
		}
		return nil, fmt.Errorf("listen: %w", err)
	}
	ls.ready.URL = scheme + "://" + ls.main.Addr().String()
	if ls.mainSrv.TLSConfig != nil {
		ls.main = tls.NewListener(ls.main, ls.mainSrv.TLSConfig)
	}
	return ls, nil
}

// serveUntilDone serves until ctx is done (SIGTERM or SIGINT), then
// shuts down gracefully, or until a listener fails.
func serveUntilDone(ctx context.Context, cfg *serveConfig, ls *listeners) error {
	f, log := cfg.flags, cfg.logger
	errc := make(chan error, 2)
	go func() { errc <- ls.mainSrv.Serve(ls.main) }()
	if ls.metricsSrv != nil {
		go func() { errc <- ls.metricsSrv.Serve(ls.metrics) }()
	}
	if f.insecureNoAuth {
		// Named after listening, so that the address is the real one
		// even with port 0.
		log.Warn("AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach " + ls.ready.URL + " can decrypt payloads with this server's KMS access. Use it for local development only.")
	}
	log.Info("listening", slog.String("url", ls.ready.URL), slog.String("metrics_url", ls.ready.MetricsURL),
		slog.Bool("encode", f.enableEncode), slog.String("auth", authMode(cfg)))
	if f.readyFile != "" {
		if err := writeReadyFile(f.readyFile, ls.ready); err != nil {
			ls.close()
			return err
		}
	}

	select {
	case err := <-errc:
		// A listener failed on its own: stop the other and report.
		ls.close()
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", slog.Duration("timeout", f.shutdownTimeout))
	shutdownCtx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	err := ls.mainSrv.Shutdown(shutdownCtx)
	if ls.metricsSrv != nil {
		_ = ls.metricsSrv.Shutdown(shutdownCtx)
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// authMode names the authentication in force, for the startup log.
func authMode(cfg *serveConfig) string {
	f := cfg.flags
	if f.insecureNoAuth {
		return "none"
	}
	var modes []string
	if cfg.staticToken != "" {
		modes = append(modes, "static-token")
	}
	if f.scopedTokenFile != "" {
		modes = append(modes, "scoped-tokens")
	}
	if f.oidcIssuer != "" {
		modes = append(modes, "oidc")
	}
	return strings.Join(modes, "+")
}

// metricsRegistry gathers the codec's counters, the Go runtime and
// process metrics; the codec server adds its request metrics.
func metricsRegistry(c *codec.Codec) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		codecserver.NewCodecCollector(c.Stats),
	)
	return reg
}

// metricsHandler serves reg in the Prometheus exposition format.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// readyInfo is the content of --ready-file: where the server listens, for
// whatever started it with port 0.
type readyInfo struct {
	URL        string `json:"url"`
	MetricsURL string `json:"metrics_url,omitempty"`
}

// writeReadyFile writes the file under a temporary name and renames it, so
// a reader polling for it never sees it half written.
func writeReadyFile(path string, info readyInfo) error {
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kmscodec-ready-*")
	if err != nil {
		return fmt.Errorf("ready file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("ready file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ready file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("ready file: %w", err)
	}
	return nil
}
