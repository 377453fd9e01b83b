package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// TypeScriptProgram returns the command that runs the TypeScript
// cross-language program (typescript/crosslang, built into
// typescript/dist/ by `make typescript-deps`) in mode "worker" or
// "starter": node from NODE or PATH, and the built script. It fails,
// naming the make target, when either is missing.
func TypeScriptProgram(mode string) (*exec.Cmd, error) {
	_, here, _, ok := runtime.Caller(0)
	if !ok {
		return nil, errors.New("cannot locate the repository")
	}
	root := filepath.Join(filepath.Dir(here), "..", "..")
	script := filepath.Join(root, "typescript", "dist", "crosslang", "main.js")
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("the TypeScript cross-language program is not built (%v): run `make typescript-deps` in the repository root", err)
	}
	node := os.Getenv("NODE")
	if node == "" {
		node = "node"
	}
	path, err := exec.LookPath(node)
	if err != nil {
		return nil, fmt.Errorf("node (Node.js 20 or later) is needed to run the TypeScript program, set NODE=/path/to/node: %w", err)
	}
	cmd := exec.Command(path, script, mode)
	cmd.Dir = filepath.Join(root, "typescript")
	return cmd, nil
}
