package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/temporal-kms/kmscodec/codec"
)

// serveFlags are the flags of kmscodec serve.
type serveFlags struct {
	kms kmsFlags

	listen          string
	tlsCert         string
	tlsKey          string
	allowPlaintext  bool
	insecureNoAuth  bool
	authTokenFile   string
	oidcIssuer      string
	oidcAudience    string
	oidcClaim       string
	namespaces      []string
	defaultNS       string
	allowUnbound    bool
	enableEncode    bool
	corsOrigins     []string
	corsCredentials bool
	maxBodyBytes    int64
	maxPayloads     int
	maxInFlight     int
	readTimeout     time.Duration
	writeTimeout    time.Duration
	idleTimeout     time.Duration
	shutdownTimeout time.Duration
	metricsListen   string
	readyFile       string
	logFormat       string
	logLevel        string
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
/encode). Both are also served under /{namespace}/. GET /healthz answers
when the server is up.

Every request must carry 'Authorization: Bearer <token>': a static token
(--auth-token-file or $KMSCODEC_AUTH_TOKEN), or a JWT access token from an
OIDC issuer (--oidc-issuer, --oidc-audience) whose permissions claim
grants "<namespace>:read" (decode) or "<namespace>:write" (encode). A
payload bound to another namespace than the request's is refused.
--insecure-no-auth serves without authentication, on loopback only.

Serve over TLS (--tls-cert, --tls-key) anywhere but loopback: tokens and
decrypted payloads cross the network. Behind a TLS-terminating proxy, set
--allow-plaintext.`,
		Example: `  # Decode for the Temporal CLI and scripts, with a static token:
  export KMSCODEC_AUTH_TOKEN=$(openssl rand -hex 32)
  kmscodec serve --listen 0.0.0.0:8443 \
    --tls-cert server.crt --tls-key server.key \
    --key-id arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab
  temporal workflow show -w my-workflow --codec-endpoint https://codec.example.com:8443 \
    --codec-auth "Bearer $KMSCODEC_AUTH_TOKEN"

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
	fs := cmd.Flags()
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8081", "address to listen on; port 0 picks a free one (see --ready-file)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate file (PEM); required with --tls-key")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	fs.BoolVar(&f.allowPlaintext, "allow-plaintext", false, "serve plain HTTP on a non-loopback address, for use behind a TLS-terminating proxy")
	fs.BoolVar(&f.insecureNoAuth, "insecure-no-auth", false, "serve without authentication (loopback addresses only; for local development)")
	fs.StringVar(&f.authTokenFile, "auth-token-file", "", "file holding the static bearer token (or set $"+authTokenEnv+")")
	fs.StringVar(&f.oidcIssuer, "oidc-issuer", "", "OIDC issuer URL whose JWT access tokens are accepted")
	fs.StringVar(&f.oidcAudience, "oidc-audience", "", "audience (aud) the access tokens must carry; required with --oidc-issuer")
	fs.StringVar(&f.oidcClaim, "oidc-permissions-claim", "permissions", `token claim listing "<namespace>:<role>" permissions`)
	fs.StringVar(&f.defaultNS, "default-namespace", "default", `namespace of a request that names none, as the Temporal CLI's requests do when it runs in its default namespace ("" refuses them)`)
	fs.StringSliceVar(&f.namespaces, "allowed-namespace", nil, "namespace to serve; if given, all others are refused (repeatable)")
	fs.BoolVar(&f.allowUnbound, "allow-unbound-payloads", false, "decrypt payloads whose encryption context names no namespace (they cannot be checked against the caller's namespace)")
	fs.BoolVar(&f.enableEncode, "enable-encode", false, "serve /encode (needs kms:GenerateDataKey on --key-id)")
	fs.StringSliceVar(&f.corsOrigins, "cors-origin", nil, "Web UI origin allowed to call from a browser, such as https://temporal.example.com (repeatable)")
	fs.BoolVar(&f.corsCredentials, "cors-allow-credentials", false, `allow browsers to send credentials (the Web UI's "include cross-origin credentials")`)
	fs.Int64Var(&f.maxBodyBytes, "max-body-bytes", defaultMaxBodyBytes, "largest request body accepted")
	fs.IntVar(&f.maxPayloads, "max-payloads", defaultMaxPayloads, "most payloads accepted in one request")
	fs.IntVar(&f.maxInFlight, "max-in-flight", defaultMaxInFlight, "most encode and decode requests handled at once; more get 503")
	fs.DurationVar(&f.readTimeout, "read-timeout", 30*time.Second, "time allowed to read a request")
	fs.DurationVar(&f.writeTimeout, "write-timeout", 60*time.Second, "time allowed to handle a request and write the response")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 2*time.Minute, "time an idle keep-alive connection is kept")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 20*time.Second, "time allowed for requests in flight to finish on SIGTERM or SIGINT")
	fs.StringVar(&f.metricsListen, "metrics-listen", "", "address to serve Prometheus /metrics on (default: no metrics)")
	fs.StringVar(&f.readyFile, "ready-file", "", `file to write, once listening, as {"url": ..., "metrics_url": ...}`)
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.kms.register(fs, true)
	bindEnv(fs, nil)
	return cmd
}

// serveConfig is serve's flags, checked and loaded.
type serveConfig struct {
	flags  *serveFlags
	token  *staticToken
	logger *slog.Logger
}

// checkServeFlags validates the flags without touching the network. It is
// where the server refuses to become an open decryption oracle.
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
	loopback := isLoopbackHost(host)

	tokenValue, _ := a.lookupEnv(authTokenEnv)
	tokenSet := tokenValue != ""
	hasStatic := f.authTokenFile != "" || tokenSet
	hasOIDC := f.oidcIssuer != ""
	switch {
	case f.insecureNoAuth && (hasStatic || hasOIDC):
		return nil, usagef(cmd, "--insecure-no-auth conflicts with the authentication configured (static token or --oidc-issuer)")
	case f.insecureNoAuth && !loopback:
		return nil, usagef(cmd, "refusing --insecure-no-auth on %q: without authentication the server would decrypt for anyone who can reach it; listen on 127.0.0.1 or ::1", f.listen)
	case !f.insecureNoAuth && !hasStatic && !hasOIDC:
		return nil, usagef(cmd, "no authentication configured: set --auth-token-file or $%s (a static bearer token), or --oidc-issuer with --oidc-audience; --insecure-no-auth serves without authentication on loopback only", authTokenEnv)
	case f.authTokenFile != "" && tokenSet:
		return nil, usagef(cmd, "set either --auth-token-file or $%s, not both", authTokenEnv)
	case hasOIDC && f.oidcAudience == "":
		return nil, usagef(cmd, "--oidc-issuer needs --oidc-audience: without an audience check, a token minted for any other application would be accepted")
	case !hasOIDC && f.oidcAudience != "":
		return nil, usagef(cmd, "--oidc-audience needs --oidc-issuer")
	}
	if hasOIDC {
		if err := checkIssuerURL(f.oidcIssuer); err != nil {
			return nil, usagef(cmd, "%v", err)
		}
		if f.oidcClaim == "" {
			return nil, usagef(cmd, "--oidc-permissions-claim must not be empty")
		}
	}
	if hasStatic {
		if f.authTokenFile != "" {
			b, err := os.ReadFile(f.authTokenFile)
			if err != nil {
				return nil, usagef(cmd, "reading --auth-token-file: %v", err)
			}
			tokenValue = string(b)
		}
		if cfg.token, err = newStaticToken(tokenValue); err != nil {
			return nil, usagef(cmd, "%v", err)
		}
	}

	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, usagef(cmd, "--tls-cert and --tls-key go together")
	}
	if f.tlsCert == "" && !loopback && !f.allowPlaintext {
		return nil, usagef(cmd, "refusing to serve plain HTTP on %q: bearer tokens and decrypted payloads would cross the network in the clear; set --tls-cert and --tls-key, or --allow-plaintext behind a TLS-terminating proxy", f.listen)
	}
	for _, o := range f.corsOrigins {
		if err := checkOrigin(o); err != nil {
			return nil, usagef(cmd, "--cors-origin %q: %v", o, err)
		}
	}
	if f.defaultNS != "" && !namespacePattern.MatchString(f.defaultNS) {
		return nil, usagef(cmd, "--default-namespace %q is not a namespace name", f.defaultNS)
	}
	for _, ns := range f.namespaces {
		if !namespacePattern.MatchString(ns) {
			return nil, usagef(cmd, "--allowed-namespace %q is not a namespace name", ns)
		}
	}
	switch {
	case f.maxBodyBytes <= 0:
		return nil, usagef(cmd, "--max-body-bytes must be positive")
	case f.maxPayloads <= 0:
		return nil, usagef(cmd, "--max-payloads must be positive")
	case f.maxInFlight <= 0:
		return nil, usagef(cmd, "--max-in-flight must be positive")
	case f.readTimeout <= 0, f.writeTimeout <= 0, f.idleTimeout <= 0, f.shutdownTimeout <= 0:
		return nil, usagef(cmd, "timeouts must be positive")
	}
	if f.metricsListen != "" {
		if _, _, err := net.SplitHostPort(f.metricsListen); err != nil {
			return nil, usagef(cmd, "--metrics-listen %q: %v", f.metricsListen, err)
		}
	}
	if err := f.kms.validate(cmd, f.enableEncode); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkOrigin accepts a browser origin: scheme and host, nothing else.
// "*" is refused: any web page could then have a signed-in operator's
// browser decrypt for it.
func checkOrigin(o string) error {
	if o == "*" || strings.Contains(o, "*") {
		return errors.New(`wildcards are not allowed; list each Web UI origin`)
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return errors.New("an origin is scheme://host[:port], such as https://temporal.example.com")
	}
	return nil
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

func (a *app) runServe(cmd *cobra.Command, f *serveFlags) error {
	cfg, err := a.checkServeFlags(cmd, f)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	log := cfg.logger

	var auth authenticator = noAuth{}
	if !f.insecureNoAuth {
		ta := &tokenAuth{static: cfg.token}
		if f.oidcIssuer != "" {
			if ta.oidc, err = newOIDCVerifier(ctx, oidcConfig{issuer: f.oidcIssuer, audience: f.oidcAudience, claim: f.oidcClaim}); err != nil {
				return err
			}
		}
		auth = ta
	}

	api, err := f.kms.client(ctx)
	if err != nil {
		return err
	}
	c, err := codec.New(f.kms.codecOptions(api, f.enableEncode))
	if err != nil {
		return &usageError{cmd: cmd.CommandPath(), err: err}
	}

	var metrics *httpMetrics
	var metricsSrv *http.Server
	var metricsLn net.Listener
	if f.metricsListen != "" {
		metrics = newHTTPMetrics()
		metricsLn, err = net.Listen("tcp", f.metricsListen)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		metricsSrv = &http.Server{
			Handler:           metricsHandler(metricsRegistry(c, metrics)),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       f.readTimeout,
			WriteTimeout:      f.writeTimeout,
			IdleTimeout:       f.idleTimeout,
		}
	}

	srv := newServer(c, auth, serverConfig{
		MaxBodyBytes:         f.maxBodyBytes,
		MaxPayloads:          f.maxPayloads,
		MaxInFlight:          f.maxInFlight,
		DefaultNamespace:     f.defaultNS,
		AllowedNamespaces:    f.namespaces,
		AllowUnboundPayloads: f.allowUnbound,
		EnableEncode:         f.enableEncode,
		CORSOrigins:          f.corsOrigins,
		CORSAllowCredentials: f.corsCredentials,
	}, log, metrics)

	httpSrv := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       f.readTimeout,
		WriteTimeout:      f.writeTimeout,
		IdleTimeout:       f.idleTimeout,
		// JWTs with many permissions are large, but not megabytes.
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return &usageError{cmd: cmd.CommandPath(), err: fmt.Errorf("loading TLS certificate: %w", err)}
		}
		httpSrv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		scheme = "https"
	}

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		if metricsLn != nil {
			metricsLn.Close()
		}
		return fmt.Errorf("listen: %w", err)
	}
	if httpSrv.TLSConfig != nil {
		ln = tls.NewListener(ln, httpSrv.TLSConfig)
	}
	ready := readyInfo{URL: scheme + "://" + ln.Addr().String()}

	errc := make(chan error, 2)
	go func() { errc <- httpSrv.Serve(ln) }()
	if metricsSrv != nil {
		ready.MetricsURL = "http://" + metricsLn.Addr().String() + "/metrics"
		go func() { errc <- metricsSrv.Serve(metricsLn) }()
	}
	if f.insecureNoAuth {
		// Named after listening, so that the address is the real one
		// even with port 0.
		log.Warn("AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach " + ready.URL + " can decrypt payloads with this server's KMS access. Use it for local development only.")
	}
	log.Info("listening", slog.String("url", ready.URL), slog.String("metrics_url", ready.MetricsURL),
		slog.Bool("encode", f.enableEncode), slog.String("auth", authMode(f, cfg.token != nil)))
	if f.readyFile != "" {
		if err := writeReadyFile(f.readyFile, ready); err != nil {
			httpSrv.Close()
			if metricsSrv != nil {
				metricsSrv.Close()
			}
			return err
		}
	}

	select {
	case err := <-errc:
		// A listener failed on its own: stop the other and report.
		httpSrv.Close()
		if metricsSrv != nil {
			metricsSrv.Close()
		}
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", slog.Duration("timeout", f.shutdownTimeout))
	shutdownCtx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	err = httpSrv.Shutdown(shutdownCtx)
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(shutdownCtx)
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// authMode names the authentication in force, for the startup log.
func authMode(f *serveFlags, static bool) string {
	if f.insecureNoAuth {
		return "none"
	}
	var modes []string
	if static {
		modes = append(modes, "static-token")
	}
	if f.oidcIssuer != "" {
		modes = append(modes, "oidc")
	}
	return strings.Join(modes, "+")
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
