package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// JavaCrossLangCommand returns the command line that runs the Java
// cross-language program (java/crosslang) in mode, "worker" or "starter".
// `make java-crosslang` builds it and writes the java command and the
// classpath under java/crosslang/target/; when they are missing the error
// names that target.
func JavaCrossLangCommand(mode string) ([]string, error) {
	_, here, _, ok := runtime.Caller(0)
	if !ok {
		return nil, errors.New("cannot locate the repository")
	}
	target := filepath.Join(filepath.Dir(here), "..", "..", "java", "crosslang", "target")
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(target, name))
		if err != nil || len(strings.TrimSpace(string(b))) == 0 {
			return "", fmt.Errorf("java/crosslang/target/%s is missing or empty: run `make java-crosslang` first (%v)", name, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	java, err := read("java.txt")
	if err != nil {
		return nil, err
	}
	classpath, err := read("classpath.txt")
	if err != nil {
		return nil, err
	}
	classes := filepath.Join(target, "classes")
	if _, err := os.Stat(filepath.Join(classes, "io", "github", "temporalkms", "kmscodec", "crosslang", "Main.class")); err != nil {
		return nil, fmt.Errorf("the Java cross-language program is not built: run `make java-crosslang` first (%v)", err)
	}
	return []string{
		java,
		// A short-lived test process: start fast rather than peak fast.
		"-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
		"-cp", classes + string(os.PathListSeparator) + classpath,
		"io.github.temporalkms.kmscodec.crosslang.Main", mode,
	}, nil
}
