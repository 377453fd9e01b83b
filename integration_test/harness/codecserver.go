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
	bin, err := KmscodecPath()
	if err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(t.TempDir(), "ready.json")
	args = append([]string{"serve", "--listen", "127.0.0.1:0", "--ready-file", ready}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	p := StartProcess(t, cmd)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil && len(b) > 0 {
			var info struct {
				URL        string `json:"url"`
				MetricsURL string `json:"metrics_url"`
			}
			if err := json.Unmarshal(b, &info); err != nil {
				t.Fatalf("ready file: %v", err)
			}
			return &CodecServer{URL: info.URL, MetricsURL: info.MetricsURL, Process: p}
		}
		select {
		case <-p.Exited():
			t.Fatalf("kmscodec serve exited before listening:\n%s", p.Log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("kmscodec serve not listening after 30s:\n%s", p.Log())
		}
	}
}
