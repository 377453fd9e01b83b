package main

import (
	"bytes"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// decodeCommandLine is kmscodec decode of the history fixture with both
// of its keys allowed, reaching a fake KMS; it writes to --output-file
// output.
func decodeCommandLine(t *testing.T, output string) []string {
	t.Helper()
	fake := kmstest.New()
	fake.AddKey(oldKeyARN)
	fake.AddKey(newKeyARN)
	srv := httptest.NewServer(fake.Handler())
	t.Cleanup(srv.Close)
	setFakeAWSEnv(t)
	return []string{"decode", "--kms-endpoint", srv.URL, "--decrypt-key-id", oldKeyARN, "--decrypt-key-id", newKeyARN,
		"--output-file", output, filepath.Join("testdata", "fixtures", "history.json")}
}

// runKmscodec runs kmscodec in this process and returns its exit status
// and standard error.
func runKmscodec(args []string) (int, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, strings.NewReader(""), &stdout, &stderr, func(string) (string, bool) { return "", false })
	return code, stderr.String()
}

// checkDecodedFile checks that path is a regular file with mode 0600
// holding the decoded history.
func checkDecodedFile(t *testing.T, path string) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Mode().IsRegular() || info.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want a regular file with mode 0600", path, info.Mode())
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "fixtures", "history.plain.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s does not hold the decoded history", path)
	}
}

// checkOnlyFiles checks that dir holds exactly the files named: no
// temporary file was left behind.
func checkOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

// TestDecodeOutputFileIsPrivate: decrypted workflow data is written
// readable by its owner only, also over a file that was readable by all.
func TestDecodeOutputFileIsPrivate(t *testing.T) {
	for _, existing := range []bool{false, true} {
		name := "new file"
		if existing {
			name = "over a world-readable file"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "decoded.json")
			if existing {
				if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(out, 0o644); err != nil { // past the umask
					t.Fatal(err)
				}
			}
			if code, stderr := runKmscodec(decodeCommandLine(t, out)); code != exitOK {
				t.Fatalf("exit status %d: %s", code, stderr)
			}
			checkDecodedFile(t, out)
			checkOnlyFiles(t, dir, "decoded.json")
		})
	}
}

// TestDecodeOutputFileReplacesASymlinkWithoutWritingThroughIt: a
// symbolic link planted at the output path is replaced by the decoded
// file; the file it points to is not touched.
func TestDecodeOutputFileReplacesASymlinkWithoutWritingThroughIt(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim.txt")
	if err := os.WriteFile(victim, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "decoded.json")
	if err := os.Symlink(victim, out); err != nil {
		t.Fatal(err)
	}
	if code, stderr := runKmscodec(decodeCommandLine(t, out)); code != exitOK {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	checkDecodedFile(t, out)
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep me" {
		t.Errorf("the symlink's target was written through: it now holds %d bytes (%v)", len(b), err)
	}
	checkOnlyFiles(t, dir, "decoded.json", "victim.txt")
}

// TestDecodeOutputFileLeavesNothingBehindOnFailure: when the output
// cannot be put in place, the command fails and removes its temporary
// file; when decoding fails, nothing is written at all.
func TestDecodeOutputFileLeavesNothingBehindOnFailure(t *testing.T) {
	t.Run("the output path is a directory", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "decoded.json")
		if err := os.Mkdir(out, 0o700); err != nil {
			t.Fatal(err)
		}
		code, stderr := runKmscodec(decodeCommandLine(t, out))
		if code != exitFailure || !strings.Contains(stderr, "writing output") {
			t.Errorf("exit status %d, stderr %q; want 1 and a write error", code, stderr)
		}
		checkOnlyFiles(t, dir, "decoded.json")
	})
	t.Run("a payload under a key not allowed", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "decoded.json")
		if err := os.WriteFile(out, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		args := decodeCommandLine(t, out)
		args = append(args[:3], args[5:]...) // allow only the new key
		code, stderr := runKmscodec(args)
		if code != exitFailure || !strings.Contains(stderr, "not allowed") {
			t.Errorf("exit status %d, stderr %q; want 1 and the key not allowed", code, stderr)
		}
		if b, _ := os.ReadFile(out); string(b) != "old" {
			t.Errorf("the output file was changed to %q", b)
		}
		checkOnlyFiles(t, dir, "decoded.json")
	})
	t.Run("writing fails half way", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "decoded.json")
		if err := os.WriteFile(out, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		diskFull := errors.New("no space left on device")
		err := replaceFile(out, func(w io.Writer) error {
			if _, err := w.Write([]byte(`{"events": [`)); err != nil {
				return err
			}
			return diskFull
		})
		if !errors.Is(err, diskFull) {
			t.Errorf("error %v, want the write's", err)
		}
		if b, _ := os.ReadFile(out); string(b) != "old" {
			t.Errorf("the output file was changed to %q", b)
		}
		checkOnlyFiles(t, dir, "decoded.json")
	})
}
