package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The deployment examples in deploy/ configure kmscodec serve with flags
// and KMSCODEC_* variables. These tests hold them to what serve --help
// lists, so that a renamed or removed flag cannot leave an example that
// no longer starts.

var (
	// A flag's line in --help: "  -o, --output string   ..." or
	// "      --max-body-bytes int   ...".
	helpFlagLine = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)`)
	// A variable in --help: "[$KMSCODEC_MAX_BODY_BYTES]", or one without
	// a flag, such as $KMSCODEC_AUTH_TOKEN, in the description.
	helpVariable = regexp.MustCompile(`\$(KMSCODEC_[A-Z0-9_]+)`)

	// A flag in a deployment file: --name at the start of a word or
	// after a quote, bracket, comma or equals sign.
	fileFlag     = regexp.MustCompile(`(?:^|[\s"'\[,=])(--[a-z0-9][a-z0-9-]*)`)
	fileVariable = regexp.MustCompile(`\bKMSCODEC_[A-Z0-9_]+`)
	// The Dockerfile instructions whose arguments are kmscodec's; the
	// others' options (COPY --from) are Docker's.
	dockerfileCommand = regexp.MustCompile(`^\s*(?i:ENTRYPOINT|CMD)\b`)
)

// serveNames returns the flags ("--listen") and variables
// ("KMSCODEC_LISTEN") that kmscodec serve --help lists.
func serveNames(t *testing.T) map[string]bool {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--help"}, strings.NewReader(""), &stdout, &stderr, func(string) (string, bool) { return "", false }); code != exitOK {
		t.Fatalf("kmscodec serve --help: exit status %d: %s", code, stderr.String())
	}
	names := map[string]bool{}
	for _, m := range helpFlagLine.FindAllStringSubmatch(stdout.String(), -1) {
		names["--"+m[1]] = true
	}
	for _, m := range helpVariable.FindAllStringSubmatch(stdout.String(), -1) {
		names[m[1]] = true
	}
	if !names["--listen"] || !names["KMSCODEC_LISTEN"] || !names["KMSCODEC_AUTH_TOKEN"] {
		t.Fatalf("no --listen, $KMSCODEC_LISTEN or $KMSCODEC_AUTH_TOKEN found in kmscodec serve --help:\n%s", stdout.String())
	}
	return names
}

// reference is a flag or variable named in a deployment file.
type reference struct {
	file string
	line int
	name string
}

func (r reference) String() string { return fmt.Sprintf("%s:%d: %s", r.file, r.line, r.name) }

// deployReferences returns every kmscodec flag and variable that the
// files under dir name. Variables count wherever they are. Flags count
// outside comments, since comments quote other tools' commands too
// (kubectl create secret --from-file), and in a Dockerfile only in
// ENTRYPOINT and CMD.
func deployReferences(dir string) ([]reference, error) {
	var refs []reference
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		dockerfile := strings.HasPrefix(d.Name(), "Dockerfile") && !strings.HasSuffix(d.Name(), ".dockerignore")
		lines := bufio.NewScanner(bytes.NewReader(b))
		for n := 1; lines.Scan(); n++ {
			line := lines.Text()
			for _, v := range fileVariable.FindAllString(line, -1) {
				refs = append(refs, reference{rel, n, v})
			}
			comment := strings.HasPrefix(strings.TrimSpace(line), "#")
			if comment || (dockerfile && !dockerfileCommand.MatchString(line)) {
				continue
			}
			for _, m := range fileFlag.FindAllStringSubmatch(line, -1) {
				refs = append(refs, reference{rel, n, m[1]})
			}
		}
		return lines.Err()
	})
	return refs, err
}

// unknownReferences returns the references to names not in known.
func unknownReferences(refs []reference, known map[string]bool) []reference {
	var unknown []reference
	for _, r := range refs {
		if !known[r.name] {
			unknown = append(unknown, r)
		}
	}
	return unknown
}

// TestDeployFilesNameOnlyFlagsAndVariablesThatExist: every flag and
// KMSCODEC_* variable in the Dockerfile, the Kubernetes manifests and
// the systemd unit is one kmscodec serve has.
func TestDeployFilesNameOnlyFlagsAndVariablesThatExist(t *testing.T) {
	refs, err := deployReferences(filepath.Join("..", "..", "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	var flags, variables int
	for _, r := range refs {
		if strings.HasPrefix(r.name, "--") {
			flags++
		} else {
			variables++
		}
	}
	// The examples set TLS and the token file by flag, the rest by
	// variable: finding none of either means the files were not read.
	if flags < 3 || variables < 10 {
		t.Fatalf("found %d flags and %d variables in deploy/: %v", flags, variables, refs)
	}
	for _, r := range unknownReferences(refs, serveNames(t)) {
		t.Errorf("deploy/%s, which kmscodec serve --help does not list", r)
	}
}

// TestDeployDriftCheckFindsUnknownNames: the check above reports a flag
// or variable that kmscodec does not have, in each kind of file, and
// leaves alone what is not kmscodec's.
func TestDeployDriftCheckFindsUnknownNames(t *testing.T) {
	tests := []struct {
		name, file, content string
		unknown             []string
	}{
		{"a flag in the Dockerfile's ENTRYPOINT", "Dockerfile",
			"FROM scratch\nENTRYPOINT [\"/kmscodec\", \"serve\", \"--no-such-flag\"]\n", []string{"--no-such-flag"}},
		{"a variable in the Dockerfile", "Dockerfile",
			"FROM scratch\nENV KMSCODEC_LISTEN=0.0.0.0:8443 KMSCODEC_LISTEN_ADDRESS=0.0.0.0:8443\n", []string{"KMSCODEC_LISTEN_ADDRESS"}},
		{"Docker's own options are not kmscodec's", "Dockerfile",
			"FROM golang AS build\nFROM scratch\nCOPY --from=build /out/kmscodec /kmscodec\nENTRYPOINT [\"/kmscodec\", \"serve\", \"--listen=0.0.0.0:8443\"]\n", nil},
		{"a misspelt flag in a manifest's args", "kubernetes/deployment.yaml",
			"args:\n  - --tls-cert=/tls/tls.crt\n  - --max-body-byte=1024\n", []string{"--max-body-byte"}},
		{"a variable in a ConfigMap", "kubernetes/configmap.yaml",
			"data:\n  KMSCODEC_MAX_BODY_BYTES: \"1024\"\n  KMSCODEC_MAX_BODY_SIZE: \"1024\"\n", []string{"KMSCODEC_MAX_BODY_SIZE"}},
		{"a flag in a systemd unit's ExecStart", "systemd/kmscodec.service",
			"[Service]\nExecStart=/usr/local/bin/kmscodec serve --auth-token-file=%d/token --token-file=%d/token\n", []string{"--token-file"}},
		{"a variable in an environment file", "systemd/kmscodec.env",
			"KMSCODEC_KEY_ID=arn\nKMSCODEC_KEY_ARN=arn\n", []string{"KMSCODEC_KEY_ARN"}},
		{"another tool's flags in a comment are not kmscodec's", "kubernetes/kustomization.yaml",
			"# kubectl create secret generic t --from-file=token=auth-token\nresources: []\n", nil},
	}
	known := serveNames(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tt.file)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			refs, err := deployReferences(dir)
			if err != nil {
				t.Fatal(err)
			}
			var unknown []string
			for _, r := range unknownReferences(refs, known) {
				unknown = append(unknown, r.name)
			}
			if !slices.Equal(unknown, tt.unknown) {
				t.Errorf("unknown names %q, want %q (all found: %v)", unknown, tt.unknown, refs)
			}
		})
	}
}

// TestDockerfileBuildsAStaticBinaryIntoANonRootImage: the image's
// binary is static and reproducible, and it runs as a non-root user of
// an image without a shell, as kmscodec serve.
func TestDockerfileBuildsAStaticBinaryIntoANonRootImage(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(b)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^RUN CGO_ENABLED=0 go build -trimpath .* \./cmd/kmscodec$`),
		regexp.MustCompile(`(?m)^FROM gcr\.io/distroless/static-debian12:nonroot$`),
		regexp.MustCompile(`(?m)^USER nonroot:nonroot$`),
		regexp.MustCompile(`(?m)^EXPOSE \d+`),
		// The exec form: there is no shell to run the shell form with.
		regexp.MustCompile(`(?m)^ENTRYPOINT \["/usr/local/bin/kmscodec", "serve"\]$`),
	} {
		if !want.MatchString(dockerfile) {
			t.Errorf("deploy/Dockerfile has no line matching %s", want)
		}
	}
	if i, j := strings.LastIndex(dockerfile, "\nFROM "), strings.Index(dockerfile, "\nUSER "); j < i {
		t.Error("deploy/Dockerfile sets no USER in its final stage")
	}
}
