//go:build unix

package harness

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the command in a process group of its own so that
// signalGroup reaches every process it spawns, and (on Linux) asks the
// kernel to kill it if this process dies first, so that an aborted test run
// leaves no server behind.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
}

// signalGroup sends sig to the command's whole process group.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
}
