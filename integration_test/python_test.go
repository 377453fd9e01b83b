package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// workerWrites reports whether a payload in event was written by the
// worker (workflow code and activity) rather than by the starter.
func workerWrites(event enumspb.EventType) bool {
	switch event {
	case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
		return true
	}
	return false
}

// TestPythonWorkerServesGoClient runs 200 workflows started and signalled
// by the Go starter (inputs written by Go) on a Python worker process
// (activity inputs and results written by Python), which the Go starter
// reads back and checks. Every stored payload is kms-envelope-v1 bound to
// the namespace, the codec server decodes the Python-written ones, and the
// Python process, counted at a proxy in front of the KMS emulator, makes
// one GenerateDataKey and one Decrypt per data key it did not write. The
// Python program then refuses a tampered payload and one under a key
// outside its allow-list, the latter with no KMS call.
func TestPythonWorkerServesGoClient(t *testing.T) {
	const workflows = 200
	x := newCrossLanguage(t)
	pythonKMS := harness.StartFaultProxy(t, x.KMS.URL) // counts the Python process's calls, injects nothing
	taskQueue := uniqueName("python-worker")
	worker := harness.StartPythonWorker(t, x.Env(t, taskQueue, "KMS_ENDPOINT="+pythonKMS.URL))

	ids := x.RunGoStarter(t, taskQueue, uniqueName("py-worker"), workflows, pythonLanguage)
	if err := worker.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !harness.HasLine(worker.Log(), "stopped") {
		t.Fatalf("Python worker did not shut down cleanly on SIGTERM:\n%s", worker.Log())
	}

	x.RequireEncryptedHistories(t, ids)
	pythonWritten, goKeys := splitByWriter(t, x, ids)
	if len(pythonWritten) != 3*workflows {
		t.Fatalf("%d payloads written by the Python worker, want %d", len(pythonWritten), 3*workflows)
	}
	generated, decrypted, described := pythonKMS.Forwarded("GenerateDataKey"), pythonKMS.Forwarded("Decrypt"), pythonKMS.Forwarded("DescribeKey")
	t.Logf("Python worker's KMS calls for %d workflows: %d GenerateDataKey, %d Decrypt, %d DescribeKey; data keys written by Go: %d",
		workflows, generated, decrypted, described, goKeys)
	if generated != 1 || decrypted < 1 || int(decrypted) > goKeys || described != 0 {
		t.Errorf("Python worker made %d GenerateDataKey, %d Decrypt, %d DescribeKey calls; want 1, 1 to %d, 0",
			generated, decrypted, described, goKeys)
	}

	t.Run("CodecServerDecodesPythonPayloads", func(t *testing.T) {
		// The first workflow's activity input, activity result and result.
		x.RequireCodecServerDecodes(t, pythonWritten[:3], "s3cret-"+ids[0], `"activity_language":"python"`, `"note":"from-go"`)
	})

	t.Run("TamperedPayloadFailsAuthenticationInPython", func(t *testing.T) {
		tampered := cloneWithFlippedByte(pythonWritten[0])
		if answer := pythonDecodeFile(t, x, tampered); answer.Error != "AuthenticationFailedError" {
			t.Fatalf("decode-file answered %+v, want AuthenticationFailedError", answer)
		}
		// The same payload untouched decodes: only the flipped bit failed.
		if intact := pythonDecodeFile(t, x, pythonWritten[0]); intact.Error != "" || len(intact.Payloads) != 1 {
			t.Fatalf("decode-file of the intact payload answered %+v", intact)
		}
	})

	t.Run("KeyOutsideAllowListFailsInPythonWithNoKMSCall", func(t *testing.T) {
		otherARN := x.KMS.MustCreateKey(t, "not allowed")
		other := newCodec(t, x.KMS, codec.Options{KeyID: otherARN, Namespace: x.Namespace})
		enc, err := other.Encode([]*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"x"`)}})
		if err != nil {
			t.Fatal(err)
		}
		before := emulatorCalls(x.KMS)
		// An allowed payload first: the whole batch is refused before any call.
		answer := pythonDecodeFile(t, x, pythonWritten[1], enc[0])
		if answer.Error != "KeyNotAllowedError" {
			t.Fatalf("decode-file answered %+v, want KeyNotAllowedError", answer)
		}
		if after := emulatorCalls(x.KMS); after != before || answer.KMSCalls["Decrypt"] != 0 {
			t.Fatalf("KMS calls went from %d to %d (Python counted %v); want none", before, after, answer.KMSCalls)
		}
	})
}

// TestPythonStarterDrivesGoWorker runs the Python starter (inputs and the
// finish signal written by Python) against the Go worker: 200 workflows,
// each queried until waiting, signalled, and its result checked by the
// Python starter. Every stored payload is kms-envelope-v1 bound to the
// namespace and the codec server decodes the Python-written ones. Counted
// at the emulator, the two processes make one GenerateDataKey each and one
// Decrypt per data key written by the other.
func TestPythonStarterDrivesGoWorker(t *testing.T) {
	const workflows = 200
	x := newCrossLanguage(t)
	taskQueue := uniqueName("python-starter")
	x.StartGoWorker(t, taskQueue)
	prefix := uniqueName("py-starter")
	cmd := harness.PythonCommand(t, context.Background(), nil, "starter")
	sum := x.RunStarterProcess(t, cmd, taskQueue, prefix, workflows)
	if !slices.Equal(sum.WorkflowLanguages, []string{goLanguage}) || !slices.Equal(sum.ActivityLanguages, []string{goLanguage}) {
		t.Fatalf("starter summary %+v: want workflows and activities run in Go", sum)
	}

	// Counted before the codec server below makes calls of its own.
	generated, decrypted := x.KMS.Calls("GenerateDataKey"), x.KMS.Calls("Decrypt")
	ids := crossLanguageIDs(prefix, workflows)
	x.RequireEncryptedHistories(t, ids)
	keys := distinctKeys(t, x, ids)
	dataKeys := keys["worker"] + keys["starter"]
	t.Logf("KMS calls at the emulator for %d workflows: %d GenerateDataKey, %d Decrypt; distinct data keys: %d",
		workflows, generated, decrypted, dataKeys)
	if generated > 2 || decrypted > int64(dataKeys) {
		t.Errorf("%d GenerateDataKey and %d Decrypt calls; want at most 2 (one per process) and %d (one per data key, each read by the other process)",
			generated, decrypted, dataKeys)
	}

	raw := dialRaw(t, x.Namespace)
	var first []*commonpb.Payload
	for _, f := range historyPayloads(rawHistory(t, raw, ids[0], "")) {
		first = append(first, f.Payload)
	}
	x.RequireCodecServerDecodes(t, first, "s3cret-"+ids[0], `"note":"from-python"`)
}

// pythonLanguage is what the Python implementation reports as its language.
const pythonLanguage = "python"

// splitByWriter returns the payloads of ids that the worker wrote (in
// history order) and how many distinct data keys the starter's payloads use.
func splitByWriter(t *testing.T, x *crossLanguage, ids []string) (workerWritten []*commonpb.Payload, starterKeys int) {
	t.Helper()
	raw := dialRaw(t, x.Namespace)
	keys := map[string]bool{}
	for _, id := range ids {
		for _, f := range historyPayloads(rawHistory(t, raw, id, "")) {
			if workerWrites(f.Event) {
				workerWritten = append(workerWritten, f.Payload)
				continue
			}
			env, err := envelope.Parse(f.Payload)
			if err != nil {
				t.Fatalf("%s %s: %v", id, f.Path, err)
			}
			keys[string(env.WrappedKey)] = true
		}
	}
	return workerWritten, len(keys)
}

// distinctKeys counts the distinct data keys in the histories of ids, by
// whether the worker or the starter wrote them.
func distinctKeys(t *testing.T, x *crossLanguage, ids []string) map[string]int {
	t.Helper()
	raw := dialRaw(t, x.Namespace)
	keys := map[string]map[string]bool{"worker": {}, "starter": {}}
	for _, id := range ids {
		for _, f := range historyPayloads(rawHistory(t, raw, id, "")) {
			env, err := envelope.Parse(f.Payload)
			if err != nil {
				t.Fatalf("%s %s: %v", id, f.Path, err)
			}
			writer := "starter"
			if workerWrites(f.Event) {
				writer = "worker"
			}
			keys[writer][string(env.WrappedKey)] = true
		}
	}
	return map[string]int{"worker": len(keys["worker"]), "starter": len(keys["starter"])}
}

// decodeFileAnswer is what `main.py decode-file` prints.
type decodeFileAnswer struct {
	Payloads []json.RawMessage `json:"payloads"`
	Error    string            `json:"error"`
	Message  string            `json:"message"`
	KMSCalls map[string]int    `json:"kms_calls"`
}

// pythonDecodeFile has the Python program decode payloads with the
// setup's key as the one it encrypts with (and so allows).
func pythonDecodeFile(t *testing.T, x *crossLanguage, payloads ...*commonpb.Payload) decodeFileAnswer {
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
	out, err := harness.RunPython(t, time.Minute, x.Env(t, "unused"), "decode-file", file)
	if err != nil {
		t.Fatal(err)
	}
	var answer decodeFileAnswer
	if err := json.Unmarshal([]byte(out), &answer); err != nil {
		t.Fatalf("decode-file printed %q: %v", out, err)
	}
	return answer
}

// cloneWithFlippedByte returns p with one bit of its last data byte (in
// the AES-GCM tag) flipped.
func cloneWithFlippedByte(p *commonpb.Payload) *commonpb.Payload {
	data := bytes.Clone(p.GetData())
	data[len(data)-1] ^= 1
	return &commonpb.Payload{Metadata: p.GetMetadata(), Data: data}
}
