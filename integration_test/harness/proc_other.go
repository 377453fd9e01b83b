//go:build unix && !linux

package harness

import "syscall"

// setParentDeathSignal does nothing where the kernel has no parent-death
// signal; Stop and t.Cleanup still end the process group.
func setParentDeathSignal(*syscall.SysProcAttr) {}
