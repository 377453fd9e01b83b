package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// The Java side of the mixed-language tests is java/crosslang, built by
// `make java-crosslang`; these tests fail (never skip) without it.

// javaEnv is the environment of the cross-language contract for a Java
// process against the emulator k, encrypting under keyARN.
func javaEnv(k *harness.KMS, keyARN, namespace, taskQueue string) []string {
	return []string{
		"TEMPORAL_ADDRESS=" + server.HostPort,
		"TEMPORAL_NAMESPACE=" + namespace,
		"KMS_ENDPOINT=" + k.URL,
		"KMS_KEY_ID=" + keyARN,
		"AWS_REGION=" + harness.Region,
		"AWS_ACCESS_KEY_ID=AKIDLOCALKMS",
		"AWS_SECRET_ACCESS_KEY=local-kms-secret",
		"TASK_QUEUE=" + taskQueue,
	}
}

// startJavaWorker runs the Java worker and waits until it prints "ready".
func startJavaWorker(t *testing.T, env []string) *harness.Process {
	t.Helper()
	argv, err := harness.JavaCrossLangCommand("worker")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	p := harness.StartProcess(t, cmd)
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(p.Log(), "ready") {
		select {
		case <-p.Exited():
			t.Fatalf("Java worker exited before it was ready:\n%s", p.Log())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("Java worker not ready after 90s:\n%s", p.Log())
		}
	}
	t.Cleanup(func() {
		if err := p.Stop(20 * time.Second); err != nil {
			t.Errorf("Java worker: %v", err)
		}
	})
	return p
}

// javaStarterSummary is the line the starter of every language prints.
type javaStarterSummary struct {
	Completed         int      `json:"completed"`
	WorkflowLanguages []string `json:"workflow_languages"`
	ActivityLanguages []string `json:"activity_languages"`
}

// runJavaStarter runs the Java starter to completion and returns its
// summary line.
func runJavaStarter(t *testing.T, env []string, prefix string, count int) javaStarterSummary {
	t.Helper()
	argv, err := harness.JavaCrossLangCommand("starter")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), env...),
		"WORKFLOW_ID_PREFIX="+prefix, fmt.Sprintf("WORKFLOW_COUNT=%d", count))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("Java starter: %v\nstdout:\n%s\nstderr (tail):\n%s", err, stdout.String(), tail(stderr.String(), 4000))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var summary javaStarterSummary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &summary); err != nil {
		t.Fatalf("Java starter's last line is not its summary: %v\n%s", err, stdout.String())
	}
	return summary
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// javaCrossInput and javaCrossResult are the workflow's argument and
// result in the cross-language contract.
type javaCrossInput struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

type javaCrossResult struct {
	ID               string `json:"id"`
	Secret           string `json:"secret"`
	Note             string `json:"note"`
	ActivityLanguage string `json:"activity_language"`
	WorkflowLanguage string `json:"workflow_language"`
}

// runCrossWorkflowFromGo runs CrossLanguageWorkflow by name from a Go
// client as the contract's starter does: start, query until "waiting",
// signal, wait for the result.
func runCrossWorkflowFromGo(t *testing.T, c client.Client, taskQueue, id string) (javaCrossResult, client.WorkflowRun) {
	t.Helper()
	ctx := testContext(t, 2*time.Minute)
	in := javaCrossInput{ID: id, Secret: "s3cret-" + id}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: taskQueue}, "CrossLanguageWorkflow", in)
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	eventually(t, time.Minute, "progress is waiting", func() error {
		v, err := c.QueryWorkflow(ctx, id, run.GetRunID(), "progress")
		if err != nil {
			return err
		}
		var progress string
		if err := v.Get(&progress); err != nil {
			return err
		}
		if progress != "waiting" {
			return fmt.Errorf("progress is %q", progress)
		}
		return nil
	})
	if err := c.SignalWorkflow(ctx, id, run.GetRunID(), "finish", map[string]string{"note": "from-go"}); err != nil {
		t.Fatalf("signal %s: %v", id, err)
	}
	var out javaCrossResult
	if err := run.Get(ctx, &out); err != nil {
		t.Fatalf("workflow %s: %v", id, err)
	}
	if out.ID != in.ID || out.Secret != in.Secret || out.Note != "from-go" {
		t.Fatalf("workflow %s returned id %q, secret %q, note %q", id, out.ID, out.Secret, out.Note)
	}
	return out, run
}

// TestJavaWorkerServesAGoClient: a Go client runs workflows whose workflow
// and activity are Java; every payload the server stores is
// kms-envelope-v1 bound to the namespace, and `kmscodec serve` decodes the
// payloads the Java worker wrote.
func TestJavaWorkerServesAGoClient(t *testing.T) {
	k := harness.StartKMS(t)
	keyARN := k.MustCreateKey(t, "java worker")
	taskQueue := uniqueName("java-worker")
	startJavaWorker(t, javaEnv(k, keyARN, "default", taskQueue))
	c := dialCodec(t, "default", newCodec(t, k, codec.Options{KeyID: keyARN}))

	var runs []client.WorkflowRun
	for i := 0; i < 3; i++ {
		out, run := runCrossWorkflowFromGo(t, c, taskQueue, uniqueName(fmt.Sprintf("java-worker-%d", i)))
		if out.WorkflowLanguage != "java" || out.ActivityLanguage != "java" {
			t.Fatalf("workflow ran in %q, activity in %q; want java for both", out.WorkflowLanguage, out.ActivityLanguage)
		}
		runs = append(runs, run)
	}

	token := uniqueName("java-token-0123456789abcdef0123")
	codecServer := startKMSCodecServer(t, k, keyARN, []string{"KMSCODEC_AUTH_TOKEN=" + token})
	raw := dialRaw(t, "default")
	for _, run := range runs {
		found := historyPayloads(rawHistory(t, raw, run.GetID(), run.GetRunID()))
		requireAllEncrypted(t, found)
		var javaWritten []*commonpb.Payload
		for _, f := range found {
			if ns := contextOf(t, f.Payload)[codec.NamespaceContextKey]; ns != "default" {
				t.Errorf("%s %s: temporal-namespace is %q, want default", f.Source, f.Path, ns)
			}
			if bytes.Contains(f.Payload.GetData(), []byte("s3cret-")) {
				t.Errorf("%s %s: plaintext secret stored", f.Source, f.Path)
			}
			switch f.Event {
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
				javaWritten = append(javaWritten, f.Payload)
			}
		}
		if len(javaWritten) != 3 {
			t.Fatalf("found %d payloads written by the Java worker, want 3 (activity input, activity result, workflow result)", len(javaWritten))
		}
		decoded := decodeWithCodecServer(t, codecServer.URL, token, javaWritten)
		for i, p := range decoded {
			if why := notEncrypted(p); why == "" {
				t.Fatalf("codec server left payload %d encrypted", i)
			}
			if !bytes.Contains(p.GetData(), []byte(`"s3cret-`+run.GetID()+`"`)) {
				t.Errorf("payload %d decoded by the codec server lacks the workflow's secret: %s", i, p.GetData())
			}
		}
		if !bytes.Contains(decoded[2].GetData(), []byte(`"workflow_language":"java"`)) {
			t.Errorf("workflow result decoded by the codec server: %s", decoded[2].GetData())
		}
	}
}

// decodeWithCodecServer posts payloads to a codec server's /decode and
// returns its answer.
func decodeWithCodecServer(t *testing.T, url, token string, payloads []*commonpb.Payload) []*commonpb.Payload {
	t.Helper()
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: payloads})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(testContext(t, time.Minute), http.MethodPost, url+"/decode", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Namespace", "default")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("codec server: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("codec server answered %d: %s", resp.StatusCode, b)
	}
	var out commonpb.Payloads
	if err := protojson.Unmarshal(b, &out); err != nil {
		t.Fatalf("codec server's answer is not payloads: %v", err)
	}
	if len(out.Payloads) != len(payloads) {
		t.Fatalf("codec server returned %d payloads for %d", len(out.Payloads), len(payloads))
	}
	return out.Payloads
}

// TestJavaKMSEconomy counts at the emulator: a Java starter and a Java
// worker running 200 workflows make at most one GenerateDataKey each (one
// data key per process and namespace), and at most one Decrypt each (each
// reads the other's data key once).
func TestJavaKMSEconomy(t *testing.T) {
	k := harness.StartKMS(t)
	keyARN := k.MustCreateKey(t, "java economy")
	taskQueue := uniqueName("java-economy")
	env := javaEnv(k, keyARN, "default", taskQueue)
	startJavaWorker(t, env)
	const n = 200
	summary := runJavaStarter(t, env, uniqueName("java-economy"), n)
	if summary.Completed != n {
		t.Fatalf("starter completed %d workflows, want %d", summary.Completed, n)
	}
	if fmt.Sprint(summary.WorkflowLanguages) != "[java]" || fmt.Sprint(summary.ActivityLanguages) != "[java]" {
		t.Fatalf("languages: workflows %v, activities %v; want [java]", summary.WorkflowLanguages, summary.ActivityLanguages)
	}
	const processes = 2
	t.Logf("KMS calls at the emulator for %d workflows: %s", n, k)
	if got := k.Calls(harness.OpGenerateDataKey); got < 1 || got > processes {
		t.Errorf("GenerateDataKey calls: %d, want 1 to %d (one per process)", got, processes)
	}
	if got := k.Calls(harness.OpDecrypt); got > processes {
		t.Errorf("Decrypt calls: %d, want at most %d (one per process)", got, processes)
	}
}
