package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// twoStepSignal moves a TwoStepWorkflow on to its second step.
const twoStepSignal = "finish"

// TwoStepWorkflow runs an activity, waits for a signal (while a test
// changes something under it: the key, the workers' codec, the region),
// runs another activity and returns both results.
func TwoStepWorkflow(ctx workflow.Context, in string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 100 * time.Millisecond},
	})
	var before, after, sig string
	if err := workflow.ExecuteActivity(ctx, TwoStepEcho, "before:"+in).Get(ctx, &before); err != nil {
		return "", err
	}
	workflow.GetSignalChannel(ctx, twoStepSignal).Receive(ctx, &sig)
	if err := workflow.ExecuteActivity(ctx, TwoStepEcho, "after:"+sig).Get(ctx, &after); err != nil {
		return "", err
	}
	return before + "|" + after, nil
}

// TwoStepEcho is the two-step workflow's activity.
func TwoStepEcho(_ context.Context, in string) (string, error) { return in, nil }

// registerTwoStep registers the two-step workflow and its activity.
func registerTwoStep(r worker.Registry) {
	r.RegisterWorkflow(TwoStepWorkflow)
	r.RegisterActivity(TwoStepEcho)
}

// startTwoStepWorkflows starts n two-step workflows on taskQueue with c,
// with IDs from idPrefix and inputs "<secret>-<i>", and returns once each
// has finished its first step and waits for the signal (read from raw,
// the server's view).
func startTwoStepWorkflows(t *testing.T, ctx context.Context, c, raw client.Client, taskQueue, idPrefix, secret string, n int) []client.WorkflowRun {
	t.Helper()
	runs := make([]client.WorkflowRun, n)
	for i := range runs {
		var err error
		runs[i], err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: uniqueName(idPrefix), TaskQueue: taskQueue,
		}, TwoStepWorkflow, fmt.Sprintf("%s-%d", secret, i))
		if err != nil {
			t.Fatalf("start workflow: %v", err)
		}
	}
	for _, run := range runs {
		eventually(t, time.Minute, "workflow waiting for the signal", func() error {
			return waitingForSignal(t, raw, run)
		})
	}
	return runs
}

// signalTwoStepWorkflows sends each run its signal, "sig-<secret>-<i>",
// through c.
func signalTwoStepWorkflows(t *testing.T, ctx context.Context, c client.Client, runs []client.WorkflowRun, secret string) {
	t.Helper()
	for i, run := range runs {
		if err := c.SignalWorkflow(ctx, run.GetID(), run.GetRunID(), twoStepSignal, fmt.Sprintf("sig-%s-%d", secret, i)); err != nil {
			t.Fatalf("signal: %v", err)
		}
	}
}

// waitingForSignal returns nil once run's first activity has completed
// and a workflow task after it: the workflow then waits for its signal.
func waitingForSignal(t *testing.T, raw client.Client, run client.WorkflowRun) error {
	done := false
	for _, e := range rawHistory(t, raw, run.GetID(), run.GetRunID()).GetEvents() {
		if e.GetEventType() == enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED {
			done = true
		}
		if done && e.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
			return nil
		}
	}
	return errors.New("workflow not yet waiting for the signal")
}
