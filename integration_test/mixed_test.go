package integration

import (
	"context"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// TestPythonInputRunByTypeScriptReadByGo crosses three languages in one
// workflow: a Python starter writes the input and the signal, a
// TypeScript worker runs the workflow and its activity and writes the
// result, and a Go client with a codec of its own reads that result back
// from the history. All three share one namespace and one KMS key.
func TestPythonInputRunByTypeScriptReadByGo(t *testing.T) {
	const workflows = 5
	x := newCrossLanguage(t)
	taskQueue := uniqueName("py-ts-go")
	x.StartWorkerProcess(t, typeScriptProgram(t, "worker"), taskQueue)

	prefix := uniqueName("py-ts-go")
	sum := x.RunStarterProcess(t, pythonProgram(t, "starter"), taskQueue, prefix, workflows)
	if !slices.Equal(sum.WorkflowLanguages, []string{"typescript"}) || !slices.Equal(sum.ActivityLanguages, []string{"typescript"}) {
		t.Fatalf("Python starter's summary %+v: want workflows and activities run in TypeScript", sum)
	}

	ids := crossLanguageIDs(prefix, workflows)
	x.RequireEncryptedHistories(t, ids)
	reader := dialCodec(t, x.Namespace, x.newGoCodec(t))
	ctx := testContext(t, time.Minute)
	for _, id := range ids {
		var out crossLanguageResult
		if err := reader.GetWorkflow(ctx, id, "").Get(ctx, &out); err != nil {
			t.Fatalf("Go reading %s's result: %v", id, err)
		}
		want := crossLanguageResult{ID: id, Secret: "s3cret-" + id, Note: "from-python", ActivityLanguage: "typescript", WorkflowLanguage: "typescript"}
		if out != want {
			t.Errorf("Go read %s's result as %+v, want %+v", id, out, want)
		}
	}
}

// pythonProgram is the Python cross-language program in mode.
func pythonProgram(t *testing.T, mode string) *exec.Cmd {
	t.Helper()
	return harness.PythonCommand(t, context.Background(), nil, mode)
}
