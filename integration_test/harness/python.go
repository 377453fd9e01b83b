package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// PythonEnv names the environment variable that gives the Python
// interpreter with the kmscodec package installed (make sets it to the
// venv's).
const PythonEnv = "KMSCODEC_PYTHON"

// repoRoot is the repository's root directory, found from this file.
func repoRoot() (string, error) {
	_, here, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the repository")
	}
	return filepath.Join(filepath.Dir(here), "..", ".."), nil
}

// PythonPath returns the Python interpreter that runs the Python
// cross-language program: $KMSCODEC_PYTHON if set, else the venv that
// `make python-deps` builds in .cache/python-venv. It returns an error
// naming that target when there is none, because a missing interpreter
// must fail a CI run, not skip it.
func PythonPath() (string, error) {
	if p := os.Getenv(PythonEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w (run `make python-deps` to build the venv)", PythonEnv, p, err)
		}
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ".cache", "python-venv", "bin", "python")
	if !isFile(p) {
		return "", fmt.Errorf("Python venv not found at %s: set %s, or run `make python-deps` in the repository root", p, PythonEnv)
	}
	return p, nil
}

// PythonCommand returns the command that runs the Python cross-language
// program (python/crosslang/main.py) with args, with env added to the
// test's environment. It fails the test when the interpreter is missing.
func PythonCommand(t testing.TB, ctx context.Context, env []string, args ...string) *exec.Cmd {
	t.Helper()
	python, err := PythonPath()
	if err != nil {
		t.Fatal(err)
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "python", "crosslang", "main.py")
	cmd := exec.CommandContext(ctx, python, append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), append([]string{"PYTHONUNBUFFERED=1"}, env...)...)
	return cmd
}

// StartPythonWorker runs the Python program in worker mode and waits until
// it prints "ready" (it is polling). The process is killed when the test
// ends; Stop it to check it shuts down cleanly.
func StartPythonWorker(t testing.TB, env []string) *Process {
	t.Helper()
	p := StartProcess(t, PythonCommand(t, context.Background(), env, "worker"))
	deadline := time.After(60 * time.Second)
	for !HasLine(p.Log(), "ready") {
		select {
		case <-p.Exited():
			t.Fatalf("Python worker exited before it was ready:\n%s", p.Log())
		case <-deadline:
			t.Fatalf("Python worker not ready after 60s:\n%s", p.Log())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return p
}

// RunPython runs the Python program with args to its end and returns its
// standard output; standard error is in the error when it fails.
func RunPython(t testing.TB, timeout time.Duration, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := PythonCommand(t, ctx, env, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("python %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// HasLine reports whether output has a line that is exactly line.
func HasLine(output, line string) bool {
	for _, l := range strings.Split(output, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}
