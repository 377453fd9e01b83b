package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// OrderWorkflow turns an "...-input-..." string into the matching
// "...-result-..." one, so that its input and its result are two
// different strings that a reader of the history can look for.
func OrderWorkflow(_ workflow.Context, in string) (string, error) {
	return strings.Replace(in, "-input-", "-result-", 1), nil
}

// decodedWorkflow is a finished OrderWorkflow whose payloads are stored
// encrypted.
type decodedWorkflow struct {
	ID, RunID string
	// Input and Result are the plaintext strings, which appear in the
	// history only once it is decoded.
	Input, Result string
}

// runOrderWorkflow runs OrderWorkflow on s in the default namespace, with
// a worker and a client that encrypt under keyARN, and waits for its
// result.
func runOrderWorkflow(t *testing.T, s *harness.Temporal, k *harness.KMS, keyARN, prefix string) decodedWorkflow {
	t.Helper()
	opts := codec.Options{KeyID: keyARN}
	taskQueue := uniqueName(prefix)
	startWorker(t, s.MustDial(t, codecClientOptions("default", newCodec(t, k, opts))), taskQueue, worker.Options{}, func(r worker.Registry) {
		r.RegisterWorkflow(OrderWorkflow)
	})
	starter := s.MustDial(t, codecClientOptions("default", newCodec(t, k, opts)))

	tag := uniqueName("") // "-<hex>"
	wf := decodedWorkflow{
		Input:  prefix + "-input" + tag,
		Result: prefix + "-result" + tag,
	}
	ctx := testContext(t, 2*time.Minute)
	run, err := starter.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: uniqueName(prefix), TaskQueue: taskQueue}, OrderWorkflow, wf.Input)
	if err != nil {
		t.Fatalf("start workflow: %v", err)
	}
	var out string
	if err := run.Get(ctx, &out); err != nil {
		t.Fatalf("workflow: %v", err)
	}
	if out != wf.Result {
		t.Fatalf("workflow returned %q, want %q", out, wf.Result)
	}
	wf.ID, wf.RunID = run.GetID(), run.GetRunID()

	// The strings must reach the server only encrypted, or finding them
	// in a decoded view would prove nothing.
	found := historyPayloads(rawHistory(t, s.MustDial(t, client.Options{}), wf.ID, wf.RunID))
	requireAllEncrypted(t, found)
	for _, f := range found {
		if containsAny(string(f.Payload.GetData()), wf.Input, wf.Result) {
			t.Fatalf("plaintext stored at %s %s", f.Source, f.Path)
		}
	}
	return wf
}

// startKMSCodecServer runs `kmscodec serve` against the emulator k,
// allowed to decrypt under keyARN, with the given extra environment
// (such as the static token) and flags.
func startKMSCodecServer(t *testing.T, k *harness.KMS, keyARN string, env []string, args ...string) *harness.CodecServer {
	t.Helper()
	// The emulator checks no signature, but the AWS SDK signs every
	// request and so needs credentials and the emulator's region. Shared
	// config files are pointed at nothing so that a developer's AWS
	// profile cannot change what the test runs against.
	none := filepath.Join(t.TempDir(), "none")
	env = append([]string{
		"AWS_ACCESS_KEY_ID=AKIDLOCALKMS",
		"AWS_SECRET_ACCESS_KEY=local-kms-secret",
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_CONFIG_FILE=" + none,
		"AWS_SHARED_CREDENTIALS_FILE=" + none,
		"AWS_EC2_METADATA_DISABLED=true",
		// An empty variable counts as unset; only env may set a token.
		"KMSCODEC_AUTH_TOKEN=",
	}, env...)
	args = append([]string{
		"--kms-endpoint", k.URL,
		"--region", harness.Region,
		"--key-id", keyARN,
		"--log-format", "text",
	}, args...)
	return harness.StartCodecServer(t, env, args...)
}
