package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
)

// TemporalCLIEnv names the environment variable that gives the path of the
// Temporal CLI binary used to run the development server.
const TemporalCLIEnv = "TEMPORAL_CLI"

// TemporalOptions configures StartTemporal and LaunchTemporal. The zero
// value starts a headless server with only the "default" namespace.
type TemporalOptions struct {
	// Namespaces are created at start, in addition to "default".
	Namespaces []string
	// UI serves the Web UI on a free port (UIAddress); otherwise the
	// server runs with --headless.
	UI bool
	// UIPort, if not 0, is the Web UI's port instead of a free one. A test
	// that must know the UI's origin before the server starts (to allow it
	// on a codec server that the UI is configured with) picks it with
	// FreePort.
	UIPort int
	// ExtraArgs are appended to `temporal server start-dev`, for example
	// []string{"--ui-codec-endpoint", codecServerURL}.
	ExtraArgs []string
	// Binary is the Temporal CLI; empty means TemporalCLIPath().
	Binary string
	// StartTimeout bounds the wait for the server to accept requests;
	// default 90s (a cold start takes about 6s, much more under -race
	// on a loaded machine).
	StartTimeout time.Duration
}

// Temporal is a running development server.
type Temporal struct {
	// HostPort is the frontend's gRPC address, 127.0.0.1:PORT, for
	// client.Options.HostPort.
	HostPort string
	// UIAddress is the Web UI's base URL (http://127.0.0.1:PORT), or ""
	// when the server is headless.
	UIAddress string
	// Namespaces lists the namespaces that exist at start, "default"
	// first.
	Namespaces []string

	proc *Process
}

// StartTemporal starts a development server and stops it (the whole process
// group) when the test ends, whether it passed or not. If the test failed,
// the end of the server's log is added to the test log.
func StartTemporal(t testing.TB, opts TemporalOptions) *Temporal {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := LaunchTemporal(ctx, opts)
	if err != nil {
		t.Fatalf("start Temporal dev server: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Temporal dev server log (tail):\n%s", s.Log())
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stop Temporal dev server: %v", err)
		}
	})
	return s
}

// LaunchTemporal starts a development server and waits until its frontend
// (and, if requested, its UI) answers and every namespace exists. A start
// that fails because a chosen port was taken in the meantime is retried with
// new ports. The caller must call Stop.
func LaunchTemporal(ctx context.Context, opts TemporalOptions) (*Temporal, error) {
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = TemporalCLIPath(); err != nil {
			return nil, err
		}
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 90 * time.Second
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := launchOnce(ctx, bin, opts)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if ctx.Err() != nil || !errors.Is(err, errExitedEarly) {
			break
		}
	}
	return nil, lastErr
}

var errExitedEarly = errors.New("dev server exited during start")

func launchOnce(ctx context.Context, bin string, opts TemporalOptions) (*Temporal, error) {
	ports, err := FreePorts(4)
	if err != nil {
		return nil, err
	}
	// The caller's UI port was free when it was chosen, so the kernel may
	// hand it out again here; never give it to another listener.
	for opts.UIPort != 0 && slices.Contains(ports[:3], opts.UIPort) {
		if ports, err = FreePorts(4); err != nil {
			return nil, err
		}
	}
	frontend, httpPort, metrics, ui := ports[0], ports[1], ports[2], ports[3]
	if opts.UIPort != 0 {
		ui = opts.UIPort
	}
	args := []string{
		"server", "start-dev",
		"--ip", "127.0.0.1",
		"--port", strconv.Itoa(frontend),
		"--http-port", strconv.Itoa(httpPort),
		"--metrics-port", strconv.Itoa(metrics),
		"--log-level", "warn",
		"--color", "never",
	}
	s := &Temporal{
		HostPort:   net.JoinHostPort("127.0.0.1", strconv.Itoa(frontend)),
		Namespaces: append([]string{"default"}, opts.Namespaces...),
	}
	if opts.UI {
		args = append(args, "--ui-ip", "127.0.0.1", "--ui-port", strconv.Itoa(ui))
		s.UIAddress = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ui))
	} else {
		args = append(args, "--headless")
	}
	for _, ns := range opts.Namespaces {
		args = append(args, "--namespace", ns)
	}
	args = append(args, opts.ExtraArgs...)

	cmd := exec.Command(bin, args...)
	// The CLI also takes settings from TEMPORAL_* variables; keep the
	// server independent of whatever the caller's shell has set.
	cmd.Env = withoutTemporalEnv(os.Environ())
	if s.proc, err = LaunchProcess(cmd); err != nil {
		return nil, err
	}

	if err := s.waitReady(ctx, opts); err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("%w\nserver log (tail):\n%s", err, s.Log())
	}
	return s, nil
}

func (s *Temporal) waitReady(ctx context.Context, opts TemporalOptions) error {
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	logger := QuietLogger()
	for {
		if err := s.probe(ctx, logger, opts.UI); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return fmt.Errorf("dev server not ready after %v: %w", opts.StartTimeout, err)
		}
		select {
		case <-s.proc.Exited():
			return fmt.Errorf("%w: %v", errExitedEarly, s.proc.err)
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// probe succeeds once the frontend answers, all namespaces are registered
// and the UI (if any) serves pages.
func (s *Temporal) probe(ctx context.Context, logger sdklog.Logger, ui bool) error {
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := client.DialContext(pctx, client.Options{HostPort: s.HostPort, Logger: logger})
	if err != nil {
		return err
	}
	defer c.Close()
	for _, ns := range s.Namespaces {
		if _, err := c.WorkflowService().DescribeNamespace(pctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns}); err != nil {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
	}
	if ui {
		req, _ := http.NewRequestWithContext(pctx, http.MethodGet, s.UIAddress+"/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("UI answered %s", resp.Status)
		}
	}
	return nil
}

// Stop ends the server and every process it started: SIGTERM to the
// process group, SIGKILL if it has not exited after 10s. It is safe to call
// more than once.
func (s *Temporal) Stop() error { return s.proc.Stop(10 * time.Second) }

// Log returns the end of the server's combined stdout and stderr.
func (s *Temporal) Log() string { return s.proc.Log() }

// Dial connects a client to the server. opts.HostPort is set to the server
// and, when unset, opts.Logger to QuietLogger().
func (s *Temporal) Dial(ctx context.Context, opts client.Options) (client.Client, error) {
	opts.HostPort = s.HostPort
	if opts.Logger == nil {
		opts.Logger = QuietLogger()
	}
	return client.DialContext(ctx, opts)
}

// MustDial is Dial that fails the test on error and closes the client when
// the test ends.
func (s *Temporal) MustDial(t testing.TB, opts client.Options) client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, opts)
	if err != nil {
		t.Fatalf("dial Temporal at %s: %v", s.HostPort, err)
	}
	t.Cleanup(c.Close)
	return c
}

// QuietLogger is an SDK logger that prints only warnings and errors to
// stderr, so test output stays readable. The SDK logs a failed activity's
// error message as it is; that message is exactly what the failure
// converter keeps off the server, so it is redacted here too.
func QuietLogger() sdklog.Logger {
	h := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})
	return sdklog.NewStructuredLogger(slog.New(redactActivityErrors{h}))
}

// redactActivityErrors replaces the Error attribute of the SDK's
// "Activity error." records.
type redactActivityErrors struct{ slog.Handler }

func (h redactActivityErrors) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != "Activity error." {
		return h.Handler.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "Error" {
			a = slog.String(a.Key, "[redacted]")
		}
		out.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h redactActivityErrors) WithAttrs(attrs []slog.Attr) slog.Handler {
	return redactActivityErrors{h.Handler.WithAttrs(attrs)}
}

func (h redactActivityErrors) WithGroup(name string) slog.Handler {
	return redactActivityErrors{h.Handler.WithGroup(name)}
}

// TemporalCLIPath returns the Temporal CLI binary to run: $TEMPORAL_CLI if
// set, else the one that the Makefile built into .cache/ of the working
// directory or its nearest parent that has one (.cache/bin/temporal, or
// .cache/temporal-VERSION/temporal if there is exactly one). It returns an
// error that says how to build it when there is none, because a missing
// server must fail a CI run, not skip it.
func TemporalCLIPath() (string, error) {
	if p := os.Getenv(TemporalCLIEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w (run `make temporal-cli` to build it)", TemporalCLIEnv, p, err)
		}
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		cache := filepath.Join(dir, ".cache")
		if isFile(filepath.Join(cache, "bin", "temporal")) {
			return filepath.Join(cache, "bin", "temporal"), nil
		}
		versioned, _ := filepath.Glob(filepath.Join(cache, "temporal-*", "temporal"))
		versioned = slices.DeleteFunc(versioned, func(p string) bool { return !isFile(p) })
		switch len(versioned) {
		case 0:
		case 1:
			return versioned[0], nil
		default:
			return "", fmt.Errorf("several Temporal CLIs in %s; set %s to one of %v", cache, TemporalCLIEnv, versioned)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("Temporal CLI not found: set %s, or run `make temporal-cli` in the repository root to build it into .cache/", TemporalCLIEnv)
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago. All listeners are held until every port is chosen so that
// the ports differ.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func withoutTemporalEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "TEMPORAL_") {
			out = append(out, kv)
		}
	}
	return out
}
