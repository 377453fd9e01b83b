//go:build unix && !linux

package harness

import (
	"errors"
	"syscall"
)

// setParentDeathSignal does nothing where the kernel has no parent-death
// signal; Stop and t.Cleanup still end the process group.
func setParentDeathSignal(*syscall.SysProcAttr) {}

// ResidentSetSize is measured on Linux only.
func ResidentSetSize(int) (int64, error) {
	return 0, errors.New("resident set size is read from /proc, on Linux only")
}
