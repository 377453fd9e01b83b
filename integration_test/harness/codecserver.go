package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

var kmscodecBuild struct {
	once sync.Once
	path string
	err  error
}

// KmscodecPath builds the kmscodec command of this repository once per test
// binary, into .cache/test-bin/ (git-ignored), and returns its path. Tests
// drive the binary users deploy, not an in-process server.
func KmscodecPath() (string, error) {
	b := &kmscodecBuild
	b.once.Do(func() {
		_, here, _, ok := runtime.Caller(0)
		if !ok {
			b.err = errors.New("cannot locate the repository")
			return
		}
		root := filepath.Join(filepath.Dir(here), "..", "..")
		out := filepath.Join(root, ".cache", "test-bin", "kmscodec")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/kmscodec")
		cmd.Dir = root
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./cmd/kmscodec: %v\n%s", err, msg)
			return
		}
		b.path = out
	})
	return b.path, b.err
}

// CodecServer is a running `kmscodec serve` process.
type CodecServer struct {
	// URL is where the server listens, such as http://127.0.0.1:39121.
	URL string
	// MetricsURL is the Prometheus endpoint, when --metrics-listen was given.
	MetricsURL string
	Process    *Process
}

// StartCodecServer runs `kmscodec serve` with args (to which it adds
// --listen 127.0.0.1:0 and --ready-file), with env added to the test's
// environment, waits until the server listens and stops it when the test
// ends.
func StartCodecServer(t testing.TB, env []string, args ...string) *CodecServer {
	t.Helper()
	s, err := LaunchCodecServer(t.TempDir(), env, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Process.Kill()
		if t.Failed() {
			t.Logf("output of kmscodec serve (tail):\n%s", s.Process.Log())
		}
	})
	return s
}

// LaunchCodecServer runs `kmscodec serve` as StartCodecServer does, with
// its ready file in dir, and waits until the server listens. The caller
// must end it with s.Process.Stop or Kill.
func LaunchCodecServer(dir string, env []string, args ...string) (*CodecServer, error) {
	bin, err := KmscodecPath()
	if err != nil {
		return nil, err
	}
	ready := filepath.Join(dir, "ready.json")
	args = append([]string{"serve", "--listen", "127.0.0.1:0", "--ready-file", ready}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	p, err := LaunchProcess(cmd)
	if err != nil {
		return nil, err
	}
	s, err := waitListening(p, ready)
	if err != nil {
		p.Kill()
		return nil, err
	}
	return s, nil
}

// waitListening waits for kmscodec serve to write its ready file.
func waitListening(p *Process, ready string) (*CodecServer, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil && len(b) > 0 {
			var info struct {
				URL        string `json:"url"`
				MetricsURL string `json:"metrics_url"`
			}
			if err := json.Unmarshal(b, &info); err != nil {
				return nil, fmt.Errorf("ready file: %w", err)
			}
			return &CodecServer{URL: info.URL, MetricsURL: info.MetricsURL, Process: p}, nil
		}
		select {
		case <-p.Exited():
			return nil, fmt.Errorf("kmscodec serve exited before listening:\n%s", p.Log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("kmscodec serve not listening after 30s:\n%s", p.Log())
		}
	}
}
