package harness

import (
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a child process run in its own process group, with its
// combined output kept in memory (the last 64 KiB).
type Process struct {
	cmd    *exec.Cmd
	output *tailBuffer
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
	p := &Process{cmd: cmd, output: newTailBuffer(64 << 10), exited: make(chan struct{})}
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
