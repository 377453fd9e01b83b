package integration

// Mixed-language tests of the TypeScript implementation
// (typescript/, the @temporal-kms/kmscodec package): its cross-language
// program, run as real Node.js processes against the dev server and the
// KMS emulator, paired with the Go side of crosslang_test.go.

import (
	"os/exec"
	"slices"
	"testing"

	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

const typeScriptLanguage = "typescript"

// typeScriptProgram is the command of the TypeScript program in mode
// ("worker" or "starter"); the test fails, naming the make target that
// builds it, when it is not built.
func typeScriptProgram(t *testing.T, mode string) *exec.Cmd {
	t.Helper()
	cmd, err := harness.TypeScriptProgram(mode)
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}

// TestTypeScriptWorkerServesGoClient: a Go client starts, queries and
// signals workflows that a TypeScript worker process runs, workflow and
// activity both in TypeScript. The Go side checks every field of each
// result (language fields included); every payload the server stored is
// kms-envelope-v1 bound to the namespace, and `kmscodec serve` decodes
// the ones the TypeScript worker wrote.
func TestTypeScriptWorkerServesGoClient(t *testing.T) {
	x := newCrossLanguage(t)
	taskQueue := uniqueName("xlang-ts-worker")
	x.StartWorkerProcess(t, typeScriptProgram(t, "worker"), taskQueue)

	ids := x.RunGoStarter(t, taskQueue, uniqueName("go-to-ts"), 5, typeScriptLanguage)

	payloads := x.RequireEncryptedHistories(t, ids)
	// The activity's result and the workflow's result are written by the
	// TypeScript worker, and both carry the language and the secret.
	x.RequireCodecServerDecodes(t, payloads, `"activity_language":"typescript"`, `"workflow_language":"typescript"`, "s3cret-"+ids[0], "from-go")
}

// TestTypeScriptStarterDrivesGoWorker: a TypeScript starter process
// starts workflows that a Go worker runs, waits for each to answer the
// query with "waiting", signals it, and checks its result; the server
// stores only kms-envelope-v1 payloads, and `kmscodec serve` decodes the
// ones the TypeScript client wrote (the input and the signal).
func TestTypeScriptStarterDrivesGoWorker(t *testing.T) {
	x := newCrossLanguage(t)
	taskQueue := uniqueName("xlang-go-worker")
	x.StartGoWorker(t, taskQueue)
	prefix := uniqueName("ts-to-go")

	sum := x.RunStarterProcess(t, typeScriptProgram(t, "starter"), taskQueue, prefix, 5)
	if !slices.Equal(sum.WorkflowLanguages, []string{goLanguage}) || !slices.Equal(sum.ActivityLanguages, []string{goLanguage}) {
		t.Errorf("starter saw workflow languages %v and activity languages %v, want [go] and [go]", sum.WorkflowLanguages, sum.ActivityLanguages)
	}

	ids := crossLanguageIDs(prefix, 5)
	payloads := x.RequireEncryptedHistories(t, ids)
	x.RequireCodecServerDecodes(t, payloads, "s3cret-"+ids[0], "from-typescript", `"workflow_language":"go"`)
}

// TestTypeScriptKMSEconomy: 200 workflows between a TypeScript starter
// and a TypeScript worker cost, counted at the emulator, at most one
// GenerateDataKey per process, at most one Decrypt per process (each
// reads the other's data key once) and no DescribeKey (the key is
// configured by ARN).
func TestTypeScriptKMSEconomy(t *testing.T) {
	x := newCrossLanguage(t)
	taskQueue := uniqueName("xlang-ts-economy")
	x.StartWorkerProcess(t, typeScriptProgram(t, "worker"), taskQueue)
	prefix := uniqueName("ts-economy")

	const n = 200
	sum := x.RunStarterProcess(t, typeScriptProgram(t, "starter"), taskQueue, prefix, n)
	if !slices.Equal(sum.WorkflowLanguages, []string{typeScriptLanguage}) || !slices.Equal(sum.ActivityLanguages, []string{typeScriptLanguage}) {
		t.Errorf("starter saw workflow languages %v and activity languages %v, want [typescript] and [typescript]", sum.WorkflowLanguages, sum.ActivityLanguages)
	}

	calls := x.KMS.CallCounts()
	t.Logf("KMS calls at the emulator for %d workflows: %v", n, calls)
	if calls["GenerateDataKey"] > 2 {
		t.Errorf("GenerateDataKey calls = %d, want at most 2 (one per process)", calls["GenerateDataKey"])
	}
	if calls["Decrypt"] > 2 {
		t.Errorf("Decrypt calls = %d, want at most 2 (each process unwraps the other's data key once)", calls["Decrypt"])
	}
	if calls["DescribeKey"] != 0 {
		t.Errorf("DescribeKey calls = %d, want 0 (the key is configured by ARN)", calls["DescribeKey"])
	}
	x.RequireEncryptedHistories(t, crossLanguageIDs(prefix, 3))
}
