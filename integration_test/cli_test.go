package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// cliResult is what one run of the Temporal CLI printed and how it ended.
type cliResult struct {
	Stdout, Stderr string
	// ExitCode is the process's exit status; -1 if it did not exit.
	ExitCode int
}

func (r cliResult) Output() string { return r.Stdout + r.Stderr }

// temporalCLI runs the Temporal CLI with args against the shared dev
// server and fails the test if the CLI cannot be run or does not finish in
// time; a non-zero exit is for the caller to judge.
func temporalCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	res, err := runTemporalCLI(t.TempDir(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// runTemporalCLI runs the Temporal CLI with args against the shared dev
// server, with home as its home directory, so that neither the caller's
// TEMPORAL_* variables nor configuration files reach it. It returns an
// error only if the CLI cannot be run or does not finish within a minute.
func runTemporalCLI(home string, args ...string) (cliResult, error) {
	bin, err := harness.TemporalCLIPath()
	if err != nil {
		return cliResult{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args = append(args, "--address", server.HostPort, "--color", "never")
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"HOME=" + home, "XDG_CONFIG_HOME=" + home, "PATH=" + os.Getenv("PATH")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	res := cliResult{Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: cmd.ProcessState.ExitCode()}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) || ctx.Err() != nil {
		return res, fmt.Errorf("temporal %s: %v\n%s", strings.Join(args, " "), err, res.Output())
	}
	return res, nil
}

// TestTemporalCLIDecodesThroughCodecServer runs `kmscodec serve` with a
// static token and the real Temporal CLI against it: `temporal workflow
// show --codec-endpoint` shows a workflow's input and result in the clear
// with the token, and only ciphertext without the codec server; without
// the token, with a wrong one, or in a namespace the server does not
// serve, the server refuses and the CLI fails without plaintext.
func TestTemporalCLIDecodesThroughCodecServer(t *testing.T) {
	k := harness.StartKMS(t)
	keyARN := k.MustCreateKey(t, "cli")
	wf := runOrderWorkflow(t, server, k, keyARN, "cli")

	token := uniqueName("kmscodec-cli-token-0123456789abcdef") // over 32 characters
	tokenEnv := []string{"KMSCODEC_AUTH_TOKEN=" + token}
	codecServer := startKMSCodecServer(t, k, keyARN, tokenEnv)

	show := []string{"workflow", "show", "--namespace", "default", "--workflow-id", wf.ID, "--run-id", wf.RunID}
	with := func(args ...string) []string { return append(slices.Clone(show), args...) }
	codecArgs := []string{"--codec-endpoint", codecServer.URL, "--codec-auth", "Bearer " + token}

	t.Run("JSON history is decoded with the token", func(t *testing.T) {
		decrypts := k.Calls(harness.OpDecrypt)
		res := temporalCLI(t, with(append(codecArgs, "--output", "json")...)...)
		if res.ExitCode != 0 {
			t.Fatalf("exit %d:\n%s", res.ExitCode, res.Output())
		}
		// The output is the History message in protobuf JSON, with each
		// payload as the codec server returned it.
		found := historyPayloads(parseHistory(t, res.Stdout))
		var data []string
		for _, f := range found {
			if enc := string(f.Payload.GetMetadata()["encoding"]); enc != "json/plain" {
				t.Errorf("%s %s: encoding %q after decoding, want json/plain", f.Source, f.Path, enc)
			}
			data = append(data, string(f.Payload.GetData()))
		}
		for _, want := range []string{strconv.Quote(wf.Input), strconv.Quote(wf.Result)} {
			if !slices.Contains(data, want) {
				t.Errorf("no decoded payload %s in the output; payloads: %q", want, data)
			}
		}
		// The codec server, not something else, did the decrypting.
		if k.Calls(harness.OpDecrypt) == decrypts {
			t.Error("the codec server made no KMS Decrypt call")
		}
	})

	t.Run("detailed history shows input and result with the token", func(t *testing.T) {
		res := temporalCLI(t, with(append(codecArgs, "--detailed")...)...)
		if res.ExitCode != 0 {
			t.Fatalf("exit %d:\n%s", res.ExitCode, res.Output())
		}
		for _, want := range []string{"input[0]: " + wf.Input, "result[0]: " + wf.Result} {
			if !strings.Contains(res.Stdout, want) {
				t.Errorf("%q is not in the output:\n%s", want, res.Stdout)
			}
		}
	})

	t.Run("without the codec server payloads stay encrypted", func(t *testing.T) {
		res := temporalCLI(t, with("--output", "json")...)
		if res.ExitCode != 0 {
			t.Fatalf("exit %d:\n%s", res.ExitCode, res.Output())
		}
		if containsAny(res.Output(), wf.Input, wf.Result) {
			t.Errorf("plaintext in the output without a codec:\n%s", res.Output())
		}
		requireAllEncrypted(t, historyPayloads(parseHistory(t, res.Stdout)))
	})

	// The CLI (v1.5.1) does not print the codec server's status: its
	// client retries a failed decode until the call's 10-second deadline
	// and reports "context deadline exceeded". So the refusal is read
	// from the codec server's access log, and each case has a server of
	// its own. The cases spend their time waiting on the CLI's retries,
	// so the CLIs run at the same time.
	refusals := []struct {
		name   string
		flags  []string
		auth   []string
		status string
		server *harness.CodecServer
		res    cliResult
		err    error
	}{
		{name: "without the token", status: "401"},
		{name: "with a wrong token", auth: []string{"--codec-auth", "Bearer " + uniqueName("wrong-token-0123456789abcdef0123")}, status: "401"},
		{name: "with the token but no Bearer scheme", auth: []string{"--codec-auth", token}, status: "401"},
		{name: "in a namespace the server does not serve", flags: []string{"--allowed-namespace", namespace1}, auth: []string{"--codec-auth", "Bearer " + token}, status: "403"},
	}
	var wg sync.WaitGroup
	for i := range refusals {
		c := &refusals[i]
		c.server = startKMSCodecServer(t, k, keyARN, tokenEnv, c.flags...)
		args := with(append([]string{"--codec-endpoint", c.server.URL, "--output", "json"}, c.auth...)...)
		home := t.TempDir()
		wg.Go(func() { c.res, c.err = runTemporalCLI(home, args...) })
	}
	wg.Wait()
	for _, c := range refusals {
		t.Run("refused "+c.name, func(t *testing.T) {
			if c.err != nil {
				t.Fatal(c.err)
			}
			res, log := c.res, c.server.Process.Log()
			if res.ExitCode == 0 {
				t.Errorf("exit 0, want a failure:\n%s", res.Output())
			}
			if containsAny(res.Output(), wf.Input, wf.Result) {
				t.Errorf("plaintext in the output of a refused command:\n%s", res.Output())
			}
			statuses := decodeStatuses(log)
			if len(statuses) == 0 {
				t.Fatalf("the codec server logged no decode request:\n%s", log)
			}
			for _, s := range statuses {
				if s != c.status {
					t.Fatalf("the codec server answered %s, want only %s:\n%s", s, c.status, log)
				}
			}
			t.Logf("the codec server answered %d decode requests with %s; the CLI printed: %s", len(statuses), c.status, firstLine(res.Stderr))
		})
	}
}

// parseHistory reads the output of `temporal workflow show --output json`.
func parseHistory(t *testing.T, out string) *historypb.History {
	t.Helper()
	h := &historypb.History{}
	if err := protojson.Unmarshal([]byte(out), h); err != nil {
		t.Fatalf("the output is not a history in protobuf JSON: %v\n%s", err, out)
	}
	if len(h.GetEvents()) == 0 {
		t.Fatalf("no events in the output:\n%s", out)
	}
	return h
}

// decodeStatuses returns the status of each decode request in a codec
// server's access log (text format), in order.
func decodeStatuses(log string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, " msg=request ") || !strings.Contains(line, " route=decode ") {
			continue
		}
		for _, field := range strings.Fields(line) {
			if s, ok := strings.CutPrefix(field, "status="); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// firstLine returns s up to its first newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
