package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// The worker process is this test binary run again with workerProcessEnv
// set; these variables tell it where everything is.
const (
	workerProcessEnv = "KMSCODEC_IT_WORKER"
	workerHostPort   = "KMSCODEC_IT_HOSTPORT"
	workerTaskQueue  = "KMSCODEC_IT_TASK_QUEUE"
	workerKMSURL     = "KMSCODEC_IT_KMS_URL"
	workerKeyID      = "KMSCODEC_IT_KEY_ID"
)

// StepResult is what each restart-workflow activity returns: its value and
// the process that ran it.
type StepResult struct {
	Value string
	PID   int
}

// RestartResult is the restart workflow's result.
type RestartResult struct {
	Prepare StepResult
	Long    StepResult
}

// RestartWorkflow runs a quick activity, then a long one that checkpoints
// progress in heartbeat details, during which the test kills the worker.
func RestartWorkflow(ctx workflow.Context, in string) (RestartResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		// Short, so that the killed worker's attempt times out quickly
		// and the retry goes to the new worker.
		HeartbeatTimeout: 2 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    100 * time.Millisecond,
			BackoffCoefficient: 1,
			MaximumAttempts:    10,
		},
	})
	var res RestartResult
	if err := workflow.ExecuteActivity(ctx, RestartPrepare, in).Get(ctx, &res.Prepare); err != nil {
		return res, err
	}
	if err := workflow.ExecuteActivity(ctx, RestartLongStep, res.Prepare.Value).Get(ctx, &res.Long); err != nil {
		return res, err
	}
	return res, nil
}

// RestartPrepare is the restart workflow's quick first step.
func RestartPrepare(_ context.Context, in string) (StepResult, error) {
	return StepResult{Value: "prepared:" + in, PID: os.Getpid()}, nil
}

// RestartLongStep checkpoints its progress in heartbeat details and never
// finishes on its first attempt; a retry resumes from the checkpoint,
// which a different process (with a fresh codec) must decrypt.
func RestartLongStep(ctx context.Context, in string) (StepResult, error) {
	if activity.HasHeartbeatDetails(ctx) {
		var checkpoint string
		if err := activity.GetHeartbeatDetails(ctx, &checkpoint); err != nil {
			return StepResult{}, err
		}
		return StepResult{Value: "resumed-from:" + checkpoint, PID: os.Getpid()}, nil
	}
	for {
		activity.RecordHeartbeat(ctx, "checkpoint:"+in)
		select {
		case <-ctx.Done():
			return StepResult{}, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// workerProcessMain runs a worker for the restart workflow until it is
// signalled, with a codec built from scratch (empty caches) as a real
// worker process would. It returns the process exit code.
func workerProcessMain() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "worker process:", err)
		return 1
	}
	c, err := codec.New(codec.Options{
		KMS:   harness.NewKMSClient(os.Getenv(workerKMSURL)),
		KeyID: os.Getenv(workerKeyID),
	})
	if err != nil {
		return fail(err)
	}
	opts := codecClientOptions("default", c)
	opts.HostPort = os.Getenv(workerHostPort)
	opts.Logger = harness.QuietLogger()
	cl, err := client.Dial(opts)
	if err != nil {
		return fail(err)
	}
	defer cl.Close()
	w := worker.New(cl, os.Getenv(workerTaskQueue), worker.Options{
		// When this process is killed, its sticky workflow tasks move to
		// the shared queue after this long instead of the default 5s.
		StickyScheduleToStartTimeout: time.Second,
	})
	w.RegisterWorkflow(RestartWorkflow)
	w.RegisterActivity(RestartPrepare)
	w.RegisterActivity(RestartLongStep)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := w.Start(); err != nil {
		return fail(err)
	}
	<-ctx.Done()
	w.Stop()
	return 0
}

// startWorkerProcess runs this test binary as a worker process.
func startWorkerProcess(t *testing.T, k *harness.KMS, taskQueue, keyID string) *harness.Process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// -test.run matches nothing, in case the env var were ever ignored.
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(),
		workerProcessEnv+"=1",
		workerHostPort+"="+server.HostPort,
		workerTaskQueue+"="+taskQueue,
		workerKMSURL+"="+k.URL,
		workerKeyID+"="+keyID,
	)
	return harness.StartProcess(t, cmd)
}

// TestWorkerRestart kills a worker process (SIGKILL, no graceful
// shutdown) in the middle of an activity, starts a new one with a fresh
// codec, and checks that the workflow completes with the right result:
// the new process must decrypt the history and the heartbeat details that
// the dead one wrote.
func TestWorkerRestart(t *testing.T) {
	k := harness.StartKMS(t)
	keyARN := k.MustCreateKey(t, "restart")
	taskQueue := uniqueName("restart")
	workflowID := uniqueName("restart")
	secret := uniqueName("kmscodec-secret")

	first := startWorkerProcess(t, k, taskQueue, keyARN)

	starter := dialCodec(t, "default", newCodec(t, k, codec.Options{KeyID: keyARN}))
	raw := dialRaw(t, "default")
	ctx := testContext(t, 3*time.Minute)
	run, err := starter.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflowID, TaskQueue: taskQueue}, RestartWorkflow, secret)
	if err != nil {
		t.Fatalf("start workflow: %v", err)
	}

	// Kill only once the long step has checkpointed, so the new worker
	// has encrypted heartbeat details to resume from.
	eventually(t, time.Minute, "long step checkpointed", func() error {
		desc, err := raw.DescribeWorkflowExecution(ctx, workflowID, run.GetRunID())
		if err != nil {
			return err
		}
		for _, pa := range desc.GetPendingActivities() {
			if pa.GetActivityType().GetName() == "RestartLongStep" && pa.GetHeartbeatDetails() != nil {
				requireAllEncrypted(t, findPayloads(pa.GetHeartbeatDetails(), "heartbeat details"))
				return nil
			}
		}
		select {
		case <-first.Exited():
			t.Fatal("first worker process exited on its own")
		default:
		}
		return errors.New("no heartbeat from RestartLongStep yet")
	})
	first.Kill()
	t.Logf("killed worker process %d mid-activity", first.Pid())

	second := startWorkerProcess(t, k, taskQueue, keyARN)

	var res RestartResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("workflow result: %v", err)
	}
	want := RestartResult{
		Prepare: StepResult{Value: "prepared:" + secret, PID: first.Pid()},
		Long:    StepResult{Value: "resumed-from:checkpoint:prepared:" + secret, PID: second.Pid()},
	}
	if res != want {
		t.Errorf("result differs:\n got %+v\nwant %+v", res, want)
	}
	requireAllEncrypted(t, historyPayloads(rawHistory(t, raw, workflowID, run.GetRunID())))
}
