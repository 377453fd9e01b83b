package harness

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a child process run in its own process group, with its
// combined output kept in memory (the last 64 KiB).
type Process struct {
	cmd    *exec.Cmd
	output *TailBuffer
	exited chan struct{}
	once   sync.Once
	err    error
}

// StartProcess runs cmd (whose Stdout, Stderr and SysProcAttr it sets) and
// kills its whole process group when the test ends. If the test failed, the
// end of its output is added to the test log.
func StartProcess(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p, err := LaunchProcess(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("output of %s (tail):\n%s", cmd.Path, p.Log())
		}
	})
	return p
}

// LaunchProcess starts cmd in a process group of its own. The caller must
// end it with Stop or Kill.
func LaunchProcess(cmd *exec.Cmd) (*Process, error) {
	p := &Process{cmd: cmd, output: NewTailBuffer(64 << 10), exited: make(chan struct{})}
	cmd.Stdout = p.output
	cmd.Stderr = p.output
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Pid returns the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Log returns the end of the process's combined stdout and stderr.
func (p *Process) Log() string { return p.output.String() }

// Kill sends SIGKILL to the process group, as a crash or an OOM kill would,
// and waits for the process to exit.
func (p *Process) Kill() {
	signalGroup(p.cmd, syscall.SIGKILL)
	<-p.exited
}

// Stop asks the process group to exit with SIGTERM and kills it if it is
// still running after grace. It reports an error only if it had to kill.
func (p *Process) Stop(grace time.Duration) error {
	var err error
	p.once.Do(func() {
		signalGroup(p.cmd, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(grace):
			signalGroup(p.cmd, syscall.SIGKILL)
			<-p.exited
			err = errors.New(p.cmd.Path + " did not stop on SIGTERM; killed")
		}
	})
	return err
}

// TailBuffer keeps the last max bytes written to it, from any number of
// goroutines: a child process's output, kept for a failing test's log.
type TailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

// NewTailBuffer returns a TailBuffer that keeps max bytes.
func NewTailBuffer(max int) *TailBuffer { return &TailBuffer{max: max} }

// Write keeps the end of what was written so far and p.
func (b *TailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

// String returns what is kept, without surrounding white space.
func (b *TailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(string(b.buf))
}
