package integration

import (
	"fmt"
	"os/exec"
	"testing"

	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// The Java side of the mixed-language tests is java/crosslang, built by
// `make java-crosslang`; these tests fail (never skip) without it.

const javaLanguage = "java"

// javaCommand is the Java cross-language program in mode ("worker" or
// "starter"), or fails the test naming the make target that builds it.
func javaCommand(t *testing.T, mode string) *exec.Cmd {
	t.Helper()
	argv, err := harness.JavaCrossLangCommand(mode)
	if err != nil {
		t.Fatal(err)
	}
	return exec.Command(argv[0], argv[1:]...)
}

// TestJavaWorkerServesGoStarter: workflows started, queried and signalled
// from Go run their workflow and activity in a Java worker. Every payload
// the server stores is kms-envelope-v1 with the namespace in its context,
// and `kmscodec serve` decodes them, the ones the Java worker wrote (the
// activity's input and result, the workflow's result) included.
func TestJavaWorkerServesGoStarter(t *testing.T) {
	x := newCrossLanguage(t)
	taskQueue := uniqueName("xlang-java-worker")
	x.StartWorkerProcess(t, javaCommand(t, "worker"), taskQueue)
	ids := x.RunGoStarter(t, taskQueue, uniqueName("xlang-java-worker"), 3, javaLanguage)
	payloads := x.RequireEncryptedHistories(t, ids)
	x.RequireCodecServerDecodes(t, payloads,
		"s3cret-"+ids[0], "from-go",
		`"activity_language":"java"`, `"workflow_language":"java"`)
}

// TestJavaStarterDrivesGoWorker: the Java starter starts workflows on a Go
// worker, queries each until it waits, signals it and checks its result;
// the histories are encrypted throughout and `kmscodec serve` decodes the
// payloads the Java starter wrote (the inputs and the signals).
func TestJavaStarterDrivesGoWorker(t *testing.T) {
	x := newCrossLanguage(t)
	taskQueue := uniqueName("xlang-java-starter")
	x.StartGoWorker(t, taskQueue)
	prefix := uniqueName("xlang-java-starter")
	sum := x.RunStarterProcess(t, javaCommand(t, "starter"), taskQueue, prefix, 3)
	if fmt.Sprint(sum.WorkflowLanguages) != "[go]" || fmt.Sprint(sum.ActivityLanguages) != "[go]" {
		t.Fatalf("the Java starter saw workflows in %v and activities in %v, want [go]", sum.WorkflowLanguages, sum.ActivityLanguages)
	}
	ids := crossLanguageIDs(prefix, 3)
	payloads := x.RequireEncryptedHistories(t, ids)
	x.RequireCodecServerDecodes(t, payloads, "s3cret-"+ids[0], `"note":"from-java"`, `"workflow_language":"go"`)
}

// TestJavaKMSEconomy counts at the emulator: a Java starter and a Java
// worker running 200 workflows make at most one GenerateDataKey each (one
// data key per process and namespace) and at most one Decrypt each (each
// reads the other's data key once).
func TestJavaKMSEconomy(t *testing.T) {
	x := newCrossLanguage(t)
	taskQueue := uniqueName("xlang-java-economy")
	x.StartWorkerProcess(t, javaCommand(t, "worker"), taskQueue)
	const n, processes = 200, 2
	sum := x.RunStarterProcess(t, javaCommand(t, "starter"), taskQueue, uniqueName("xlang-java-economy"), n)
	if fmt.Sprint(sum.WorkflowLanguages) != "[java]" || fmt.Sprint(sum.ActivityLanguages) != "[java]" {
		t.Fatalf("workflows ran in %v and activities in %v, want [java]", sum.WorkflowLanguages, sum.ActivityLanguages)
	}
	t.Logf("KMS calls at the emulator for %d workflows from %d Java processes: %s", n, processes, x.KMS)
	if got := x.KMS.Calls(harness.OpGenerateDataKey); got < 1 || got > processes {
		t.Errorf("GenerateDataKey calls: %d, want 1 to %d (one per process)", got, processes)
	}
	if got := x.KMS.Calls(harness.OpDecrypt); got > processes {
		t.Errorf("Decrypt calls: %d, want at most %d (one per process)", got, processes)
	}
	if got := x.KMS.Calls(harness.OpDescribeKey); got != 0 {
		t.Errorf("DescribeKey calls: %d, want 0 (the key is configured by ARN)", got)
	}
}
