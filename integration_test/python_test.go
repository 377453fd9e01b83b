package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// pythonEnv is the cross-language contract's environment for a Python
// process in namespace with keys at kmsURL. Shared AWS config files are
// pointed at nothing so that a developer's AWS profile cannot change what
// the test runs against.
func pythonEnv(t *testing.T, kmsURL, keyARN, namespace, taskQueue string) []string {
	none := filepath.Join(t.TempDir(), "none")
	return []string{
		"TEMPORAL_ADDRESS=" + server.HostPort,
		"TEMPORAL_NAMESPACE=" + namespace,
		"KMS_ENDPOINT=" + kmsURL,
		"KMS_KEY_ID=" + keyARN,
		"AWS_REGION=" + harness.Region,
		"AWS_DEFAULT_REGION=" + harness.Region,
		"AWS_ACCESS_KEY_ID=AKIDLOCALKMS",
		"AWS_SECRET_ACCESS_KEY=local-kms-secret",
		"AWS_CONFIG_FILE=" + none,
		"AWS_SHARED_CREDENTIALS_FILE=" + none,
		"AWS_EC2_METADATA_DISABLED=true",
		"TASK_QUEUE=" + taskQueue,
	}
}

// crossLanguageResult is what CrossLanguageWorkflow returns.
type crossLanguageResult struct {
	ID               string `json:"id"`
	Secret           string `json:"secret"`
	Note             string `json:"note"`
	ActivityLanguage string `json:"activity_language"`
	WorkflowLanguage string `json:"workflow_language"`
}

// runGoStarted starts CrossLanguageWorkflow from c as the contract's
// starter does, waits for it to be waiting, signals it and returns its
// result.
func runGoStarted(ctx context.Context, c client.Client, taskQueue, id string) (crossLanguageResult, error) {
	var out crossLanguageResult
	in := map[string]string{"id": id, "secret": "s3cret-" + id}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: taskQueue}, "CrossLanguageWorkflow", in)
	if err != nil {
		return out, fmt.Errorf("start %s: %w", id, err)
	}
	for {
		// A query before the first workflow task has run fails; ask again.
		v, err := c.QueryWorkflow(ctx, id, "", "progress")
		var progress string
		if err == nil && v.Get(&progress) == nil && progress == "waiting" {
			break
		}
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("%s never waiting (last error %v): %w", id, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := c.SignalWorkflow(ctx, id, "", "finish", map[string]string{"note": "from-go"}); err != nil {
		return out, fmt.Errorf("signal %s: %w", id, err)
	}
	if err := run.Get(ctx, &out); err != nil {
		return out, fmt.Errorf("result of %s: %w", id, err)
	}
	want := crossLanguageResult{ID: id, Secret: in["secret"], Note: "from-go", ActivityLanguage: "python", WorkflowLanguage: "python"}
	if out != want {
		return out, fmt.Errorf("%s returned %+v, want %+v", id, out, want)
	}
	return out, nil
}

// pythonWrites reports whether a payload in event was written by the
// worker (workflow code and activity) rather than by the starting client.
func pythonWrites(event enumspb.EventType) bool {
	switch event {
	case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
		return true
	}
	return false
}

// TestPythonWorkerServesGoClient runs 200 workflows started and signalled
// by a Go client (inputs written by Go) on a Python worker process
// (activity inputs, results written by Python), and reads them back in Go.
// Every stored payload is kms-envelope-v1 bound to the namespace, the
// codec server decodes the Python-written ones, and the Python process,
// counted at a proxy in front of the KMS emulator, makes one
// GenerateDataKey and one Decrypt per data key it did not write.
func TestPythonWorkerServesGoClient(t *testing.T) {
	const workflows = 200
	k := harness.StartKMS(t)
	keyARN := k.MustCreateKey(t, "python worker")
	pythonKMS := harness.StartFaultProxy(t, k.URL) // counts the Python process's calls, injects nothing
	taskQueue := uniqueName("python-worker")
	worker := harness.StartPythonWorker(t, pythonEnv(t, pythonKMS.URL, keyARN, namespace1, taskQueue))

	goCodec := newCodec(t, k, codec.Options{KeyID: keyARN})
	c := dialCodec(t, namespace1, goCodec)
	ctx := testContext(t, 5*time.Minute)
	prefix := uniqueName("py-worker")
	ids := make([]string, workflows)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	if err := parallel(workflows, 32, func(i int) error {
		_, err := runGoStarted(ctx, c, taskQueue, ids[i])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := worker.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !harness.HasLine(worker.Log(), "stopped") {
		t.Fatalf("Python worker did not shut down cleanly on SIGTERM:\n%s", worker.Log())
	}

	raw := dialRaw(t, namespace1)
	var pythonWritten []*commonpb.Payload
	goKeys, pythonKeys := map[string]bool{}, map[string]bool{}
	for _, id := range ids {
		for _, f := range historyPayloads(rawHistory(t, raw, id, "")) {
			env, err := envelope.Parse(f.Payload)
			if err != nil {
				t.Fatalf("%s %s: stored payload is not kms-envelope-v1: %v", id, f.Path, err)
			}
			ctx, err := env.EncryptionContext()
			if err != nil || ctx[codec.NamespaceContextKey] != namespace1 {
				t.Fatalf("%s %s: encryption context %v (%v), want %s=%s", id, f.Path, ctx, err, codec.NamespaceContextKey, namespace1)
			}
			if pythonWrites(f.Event) {
				pythonWritten = append(pythonWritten, f.Payload)
				pythonKeys[string(env.WrappedKey)] = true
			} else {
				goKeys[string(env.WrappedKey)] = true
			}
		}
	}
	if len(pythonWritten) != 3*workflows {
		t.Fatalf("%d payloads written by the Python worker, want %d", len(pythonWritten), 3*workflows)
	}

	generated, decrypted := pythonKMS.Forwarded("GenerateDataKey"), pythonKMS.Forwarded("Decrypt")
	t.Logf("Python worker KMS calls: %d GenerateDataKey, %d Decrypt, %d DescribeKey; data keys written by Go %d, by Python %d",
		generated, decrypted, pythonKMS.Forwarded("DescribeKey"), len(goKeys), len(pythonKeys))
	if generated != 1 || int(decrypted) > len(goKeys) || decrypted == 0 || pythonKMS.Forwarded("DescribeKey") != 0 {
		t.Errorf("Python worker made %d GenerateDataKey, %d Decrypt, %d DescribeKey calls; want 1, 1..%d, 0",
			generated, decrypted, pythonKMS.Forwarded("DescribeKey"), len(goKeys))
	}
	goStats := goCodec.Stats()
	if got, want := k.Calls("GenerateDataKey"), int64(goStats.GenerateDataKeyCalls)+generated; got != want {
		t.Errorf("emulator saw %d GenerateDataKey, the Go codec and the Python process made %d", got, want)
	}

	t.Run("CodecServerDecodesPythonPayloads", func(t *testing.T) {
		token := randomToken()
		srv := startKMSCodecServer(t, k, keyARN, []string{"KMSCODEC_AUTH_TOKEN=" + token})
		decoded := codecServerDecode(t, srv.URL, token, namespace1, pythonWritten[:9])
		for i, p := range decoded {
			if string(p.GetMetadata()["encoding"]) != "json/plain" {
				t.Errorf("payload %d decoded to encoding %q", i, p.GetMetadata()["encoding"])
			}
			var v map[string]any
			if err := json.Unmarshal(p.GetData(), &v); err != nil || v["id"] == nil || v["secret"] == nil {
				t.Errorf("payload %d decoded to %s, want the workflow's id and secret", i, p.GetData())
			}
		}
	})

	t.Run("TamperedPayloadFailsAuthenticationInPython", func(t *testing.T) {
		tampered := cloneWithFlippedByte(pythonWritten[0])
		answer := pythonDecodeFile(t, k.URL, keyARN, tampered)
		if answer.Error != "AuthenticationFailedError" {
			t.Fatalf("decode-file answered %+v, want AuthenticationFailedError", answer)
		}
		// The same payload untouched decodes: only the flipped bit failed.
		intact := pythonDecodeFile(t, k.URL, keyARN, pythonWritten[0])
		if intact.Error != "" || len(intact.Payloads) != 1 {
			t.Fatalf("decode-file of the intact payload answered %+v", intact)
		}
	})

	t.Run("KeyOutsideAllowListFailsInPythonWithNoKMSCall", func(t *testing.T) {
		otherARN := k.MustCreateKey(t, "not allowed")
		other := newCodec(t, k, codec.Options{KeyID: otherARN, Namespace: namespace1})
		enc, err := other.Encode([]*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"x"`)}})
		if err != nil {
			t.Fatal(err)
		}
		before := emulatorCalls(k)
		answer := pythonDecodeFile(t, k.URL, keyARN, pythonWritten[1], enc[0])
		if answer.Error != "KeyNotAllowedError" {
			t.Fatalf("decode-file answered %+v, want KeyNotAllowedError", answer)
		}
		if after := emulatorCalls(k); after != before || answer.KMSCalls["Decrypt"] != 0 {
			t.Fatalf("KMS calls went from %d to %d (Python counted %v); want none", before, after, answer.KMSCalls)
		}
	})
}

// decodeFileAnswer is what `main.py decode-file` prints.
type decodeFileAnswer struct {
	Payloads []json.RawMessage `json:"payloads"`
	Error    string            `json:"error"`
	Message  string            `json:"message"`
	KMSCalls map[string]int    `json:"kms_calls"`
}

// pythonDecodeFile has the Python program decode payloads, with keyARN as
// the key it encrypts with (and so allows), against KMS at kmsURL.
func pythonDecodeFile(t *testing.T, kmsURL, keyARN string, payloads ...*commonpb.Payload) decodeFileAnswer {
	t.Helper()
	var req struct {
		Payloads []json.RawMessage `json:"payloads"`
	}
	for _, p := range payloads {
		b, err := protojson.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		req.Payloads = append(req.Payloads, b)
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "payloads.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := harness.RunPython(t, time.Minute, pythonEnv(t, kmsURL, keyARN, namespace1, "unused"), "decode-file", file)
	if err != nil {
		t.Fatal(err)
	}
	var answer decodeFileAnswer
	if err := json.Unmarshal([]byte(out), &answer); err != nil {
		t.Fatalf("decode-file printed %q: %v", out, err)
	}
	return answer
}

// codecServerDecode posts payloads to a codec server's /decode.
func codecServerDecode(t *testing.T, url, token, namespace string, payloads []*commonpb.Payload) []*commonpb.Payload {
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
	req.Header.Set("X-Namespace", namespace)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
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

// cloneWithFlippedByte returns p with one bit of its last data byte (in
// the AES-GCM tag) flipped.
func cloneWithFlippedByte(p *commonpb.Payload) *commonpb.Payload {
	data := bytes.Clone(p.GetData())
	data[len(data)-1] ^= 1
	return &commonpb.Payload{Metadata: p.GetMetadata(), Data: data}
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
