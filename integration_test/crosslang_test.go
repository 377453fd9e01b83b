package integration

// The Go side of the mixed-language tests. Every implementation of
// kms-envelope-v1 (Go, Python, TypeScript, Java) provides the same
// workflow, activity, signal and query, and a program with two modes,
// "worker" and "starter", configured by the environment that
// crossLanguage.Env sets. Workflows then cross languages in both
// directions on one namespace, with data keys from one KMS emulator:
//
//   - CrossLanguageWorkflow takes {"id", "secret"}, runs
//     CrossLanguageActivity on the same input (which adds
//     "activity_language"), waits for the signal "finish" carrying
//     {"note"}, and returns {"id", "secret", "note", "activity_language",
//     "workflow_language"}. Its query "progress" answers "waiting" until
//     the signal arrives and "done" after.
//   - "worker" polls TASK_QUEUE with the kmscodec data converter, prints
//     the line "ready" once polling, and exits 0 on SIGTERM.
//   - "starter" runs WORKFLOW_COUNT workflows with IDs
//     "<WORKFLOW_ID_PREFIX>-<i>", queries, signals and checks each as
//     runCrossLanguageWorkflows does, prints one JSON line (starterSummary)
//     and exits 0, or prints why to stderr and exits 1.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// The names every language registers.
const (
	crossLanguageWorkflowName = "CrossLanguageWorkflow"
	crossLanguageActivityName = "CrossLanguageActivity"
	crossLanguageSignal       = "finish"
	crossLanguageQuery        = "progress"
	goLanguage                = "go"
)

// crossLanguageInput is the workflow's and the activity's argument.
type crossLanguageInput struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// crossLanguageActivityResult is what the activity returns.
type crossLanguageActivityResult struct {
	ID               string `json:"id"`
	Secret           string `json:"secret"`
	ActivityLanguage string `json:"activity_language"`
}

// crossLanguageSignalArg is the argument of the "finish" signal.
type crossLanguageSignalArg struct {
	Note string `json:"note"`
}

// crossLanguageResult is what the workflow returns.
type crossLanguageResult struct {
	ID               string `json:"id"`
	Secret           string `json:"secret"`
	Note             string `json:"note"`
	ActivityLanguage string `json:"activity_language"`
	WorkflowLanguage string `json:"workflow_language"`
}

// CrossLanguageWorkflow is the Go implementation of the shared workflow.
func CrossLanguageWorkflow(ctx workflow.Context, in crossLanguageInput) (crossLanguageResult, error) {
	progress := "waiting"
	if err := workflow.SetQueryHandler(ctx, crossLanguageQuery, func() (string, error) { return progress, nil }); err != nil {
		return crossLanguageResult{}, err
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 100 * time.Millisecond},
	})
	var act crossLanguageActivityResult
	if err := workflow.ExecuteActivity(ctx, crossLanguageActivityName, in).Get(ctx, &act); err != nil {
		return crossLanguageResult{}, err
	}
	var sig crossLanguageSignalArg
	workflow.GetSignalChannel(ctx, crossLanguageSignal).Receive(ctx, &sig)
	progress = "done"
	return crossLanguageResult{
		ID: act.ID, Secret: act.Secret, Note: sig.Note,
		ActivityLanguage: act.ActivityLanguage, WorkflowLanguage: goLanguage,
	}, nil
}

// CrossLanguageActivity is the Go implementation of the shared activity.
func CrossLanguageActivity(_ context.Context, in crossLanguageInput) (crossLanguageActivityResult, error) {
	return crossLanguageActivityResult{ID: in.ID, Secret: in.Secret, ActivityLanguage: goLanguage}, nil
}

// crossLanguage is one mixed-language setup: a KMS emulator with one key,
// shared by every process of every language, on the shared dev server.
type crossLanguage struct {
	KMS       *harness.KMS
	KeyARN    string
	Namespace string
}

// newCrossLanguage starts a KMS emulator with a key for a mixed-language
// test in namespace1.
func newCrossLanguage(t *testing.T) *crossLanguage {
	t.Helper()
	k := harness.StartKMS(t)
	return &crossLanguage{KMS: k, KeyARN: k.MustCreateKey(t, "cross-language"), Namespace: namespace1}
}

// Env is the environment of a language's worker or starter process on
// taskQueue: the contract's variables, on top of this process's
// environment, with AWS pointed at the emulator and at no shared config.
func (x *crossLanguage) Env(t *testing.T, taskQueue string, extra ...string) []string {
	none := t.TempDir() + "/none"
	env := append(os.Environ(),
		"TEMPORAL_ADDRESS="+server.HostPort,
		"TEMPORAL_NAMESPACE="+x.Namespace,
		"KMS_ENDPOINT="+x.KMS.URL,
		"KMS_KEY_ID="+x.KeyARN,
		"TASK_QUEUE="+taskQueue,
		"AWS_REGION="+harness.Region,
		"AWS_DEFAULT_REGION="+harness.Region,
		"AWS_ACCESS_KEY_ID=AKIDLOCALKMS",
		"AWS_SECRET_ACCESS_KEY=local-kms-secret",
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_CONFIG_FILE="+none,
		"AWS_SHARED_CREDENTIALS_FILE="+none,
		"AWS_EC2_METADATA_DISABLED=true",
	)
	return append(env, extra...)
}

// newGoCodec is a Go codec as a separate Go process of this setup would
// have it: its own KMS client and caches, the namespace configured.
func (x *crossLanguage) newGoCodec(t *testing.T) *codec.Codec {
	return newCodec(t, x.KMS, codec.Options{KeyID: x.KeyARN, Namespace: x.Namespace})
}

// StartGoWorker runs the Go implementation on taskQueue with a codec of
// its own, as a Go worker process would.
func (x *crossLanguage) StartGoWorker(t *testing.T, taskQueue string) {
	t.Helper()
	c := dialCodec(t, x.Namespace, x.newGoCodec(t))
	startWorker(t, c, taskQueue, worker.Options{}, func(r worker.Registry) {
		r.RegisterWorkflowWithOptions(CrossLanguageWorkflow, workflow.RegisterOptions{Name: crossLanguageWorkflowName})
		r.RegisterActivityWithOptions(CrossLanguageActivity, activity.RegisterOptions{Name: crossLanguageActivityName})
	})
}

// StartWorkerProcess runs cmd, a language's program in worker mode, with
// the contract's environment for taskQueue, and waits for its "ready"
// line.
func (x *crossLanguage) StartWorkerProcess(t *testing.T, cmd *exec.Cmd, taskQueue string) *harness.Process {
	t.Helper()
	cmd.Env = x.Env(t, taskQueue)
	p := harness.StartProcess(t, cmd)
	deadline := time.Now().Add(2 * time.Minute)
	for !hasLine(p.Log(), "ready") {
		select {
		case <-p.Exited():
			t.Fatalf("%s exited before it was ready:\n%s", cmd.Path, p.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 2m:\n%s", cmd.Path, p.Log())
		}
	}
	t.Cleanup(func() {
		if err := p.Stop(30 * time.Second); err != nil {
			t.Errorf("worker did not stop on SIGTERM: %v", err)
		}
	})
	return p
}

// hasLine reports whether out has line as one whole line.
func hasLine(out, line string) bool {
	return slices.Contains(strings.Split(out, "\n"), line)
}

// starterSummary is the JSON line a language's starter prints.
type starterSummary struct {
	Completed         int      `json:"completed"`
	WorkflowLanguages []string `json:"workflow_languages"`
	ActivityLanguages []string `json:"activity_languages"`
}

// RunStarterProcess runs cmd, a language's program in starter mode, for n
// workflows with IDs "<prefix>-<i>" on taskQueue, and returns its summary.
func (x *crossLanguage) RunStarterProcess(t *testing.T, cmd *exec.Cmd, taskQueue, prefix string, n int) starterSummary {
	t.Helper()
	cmd.Env = x.Env(t, taskQueue, fmt.Sprintf("WORKFLOW_COUNT=%d", n), "WORKFLOW_ID_PREFIX="+prefix)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s starter: %v\nstdout:\n%s\nstderr:\n%s", cmd.Path, err, stdout.String(), tail(stderr.String(), 8<<10))
		}
	case <-time.After(5 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s starter still running after 5m\nstderr:\n%s", cmd.Path, tail(stderr.String(), 8<<10))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var sum starterSummary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		t.Fatalf("starter's last line is not its JSON summary: %v\nstdout:\n%s", err, stdout.String())
	}
	if sum.Completed != n {
		t.Fatalf("starter completed %d workflows, want %d", sum.Completed, n)
	}
	return sum
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// crossLanguageIDs are the workflow IDs a run for prefix uses.
func crossLanguageIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return ids
}

// RunGoStarter is the Go implementation of the starter: it runs n
// workflows on taskQueue, served by a worker of workerLanguage, from a Go
// client with a codec of its own: queries each until it waits for the
// signal, signals it, and checks every field of its result. It returns
// the workflow IDs.
func (x *crossLanguage) RunGoStarter(t *testing.T, taskQueue, prefix string, n int, workerLanguage string) []string {
	t.Helper()
	c := dialCodec(t, x.Namespace, x.newGoCodec(t))
	ctx := testContext(t, 5*time.Minute)
	ids := crossLanguageIDs(prefix, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := runCrossLanguageWorkflow(ctx, c, taskQueue, id, workerLanguage); err != nil {
				errs <- fmt.Errorf("%s: %w", id, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	return ids
}

// runCrossLanguageWorkflow is one workflow of the starter's.
func runCrossLanguageWorkflow(ctx context.Context, c client.Client, taskQueue, id, workerLanguage string) error {
	in := crossLanguageInput{ID: id, Secret: "s3cret-" + id}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: taskQueue}, crossLanguageWorkflowName, in)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if err := awaitProgress(ctx, c, id, "waiting"); err != nil {
		return err
	}
	note := "from-" + goLanguage
	if err := c.SignalWorkflow(ctx, id, "", crossLanguageSignal, crossLanguageSignalArg{Note: note}); err != nil {
		return fmt.Errorf("signal: %w", err)
	}
	var out crossLanguageResult
	if err := run.Get(ctx, &out); err != nil {
		return fmt.Errorf("result: %w", err)
	}
	want := crossLanguageResult{ID: id, Secret: in.Secret, Note: note, ActivityLanguage: workerLanguage, WorkflowLanguage: workerLanguage}
	if out != want {
		return fmt.Errorf("result %+v, want %+v", out, want)
	}
	return awaitProgress(ctx, c, id, "done")
}

// awaitProgress queries workflow id until its progress is want.
func awaitProgress(ctx context.Context, c client.Client, id, want string) error {
	var last string
	for {
		v, err := c.QueryWorkflow(ctx, id, "", crossLanguageQuery)
		if err == nil {
			err = v.Get(&last)
		}
		if err == nil && last == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("query %s: progress %q, want %q (last error: %v)", crossLanguageQuery, last, want, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RequireEncryptedHistories checks that every payload of every workflow
// in ids, as the server stores it, is kms-envelope-v1 with the namespace
// in its encryption context, and that no secret is stored in the clear.
// It returns the payloads.
func (x *crossLanguage) RequireEncryptedHistories(t *testing.T, ids []string) []*commonpb.Payload {
	t.Helper()
	raw := dialRaw(t, x.Namespace)
	var all []*commonpb.Payload
	for _, id := range ids {
		found := historyPayloads(rawHistory(t, raw, id, ""))
		requireAllEncrypted(t, found)
		for _, f := range found {
			if ns := contextOf(t, f.Payload)[codec.NamespaceContextKey]; ns != x.Namespace {
				t.Fatalf("%s %s %s: %s = %q, want %q", id, f.Source, f.Path, codec.NamespaceContextKey, ns, x.Namespace)
			}
			if bytes.Contains(f.Payload.GetData(), []byte("s3cret-")) {
				t.Fatalf("%s %s %s: a secret is stored in the clear", id, f.Source, f.Path)
			}
			all = append(all, f.Payload)
		}
	}
	return all
}

// RequireCodecServerDecodes runs `kmscodec serve` (static token, keys in
// this setup's emulator) and checks that it decodes payloads to plaintext
// that holds every one of wants.
func (x *crossLanguage) RequireCodecServerDecodes(t *testing.T, payloads []*commonpb.Payload, wants ...string) {
	t.Helper()
	token := uniqueName("token") + "-0123456789abcdef0123456789abcdef"
	srv := startKMSCodecServer(t, x.KMS, x.KeyARN, []string{"KMSCODEC_AUTH_TOKEN=" + token})
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: payloads})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(testContext(t, time.Minute), http.MethodPost, srv.URL+"/decode", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Namespace", x.Namespace)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /decode: %v", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /decode: %d %s (%v)", resp.StatusCode, out, err)
	}
	var decoded commonpb.Payloads
	if err := protojson.Unmarshal(out, &decoded); err != nil {
		t.Fatalf("decode answer: %v", err)
	}
	var plain strings.Builder
	for _, p := range decoded.GetPayloads() {
		if string(p.GetMetadata()["encoding"]) == "binary/encrypted" {
			t.Fatalf("the codec server returned an encrypted payload")
		}
		plain.Write(p.GetData())
		plain.WriteByte('\n')
	}
	for _, w := range wants {
		if !strings.Contains(plain.String(), w) {
			t.Errorf("decoded payloads do not hold %q", w)
		}
	}
}

// TestCrossLanguageContractInGo runs the contract's Go side against
// itself: the Go starter and the Go worker, each with a codec of its own.
// The other languages' tests pair each half with their own program.
func TestCrossLanguageContractInGo(t *testing.T) {
	x := newCrossLanguage(t)
	taskQueue := uniqueName("xlang-go")
	x.StartGoWorker(t, taskQueue)
	prefix := uniqueName("xlang-go")
	ids := x.RunGoStarter(t, taskQueue, prefix, 3, goLanguage)
	payloads := x.RequireEncryptedHistories(t, ids)
	x.RequireCodecServerDecodes(t, payloads, "s3cret-"+ids[0], "from-go")
	// One process encrypted for the starter, one for the worker.
	if n := x.KMS.Calls("GenerateDataKey"); n > 2 {
		t.Errorf("GenerateDataKey calls = %d, want at most 2 (one per process)", n)
	}
}
