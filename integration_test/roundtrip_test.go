package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	querypb "go.temporal.io/api/query/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/proto"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// Names of the round-trip workflow's handlers.
const (
	roundTripSignal = "reveal"
	roundTripQuery  = "state"
	roundTripUpdate = "amend"
)

// RoundTripResult collects every value the round-trip workflow received
// through a different Temporal feature, so the test can check that each
// one decoded to what was sent.
type RoundTripResult struct {
	Echo           string // activity result
	Heartbeat      string // heartbeat details recorded by attempt 1, read by attempt 2
	FailureMessage string // ApplicationError message from the failing activity
	FailureDetail  string // ApplicationError details from the failing activity
	Signal         string // signal argument
	Update         string // update argument
	Child          string // child workflow result
}

// RoundTripWorkflow exercises every place a payload goes: input, memo
// upsert, activity input and result, heartbeat details, an activity
// failure with details, a child workflow, a signal, a query and an update.
func RoundTripWorkflow(ctx workflow.Context, secret string) (RoundTripResult, error) {
	var res RoundTripResult
	if err := workflow.SetQueryHandler(ctx, roundTripQuery, func(prefix string) (string, error) {
		return prefix + "|" + res.Signal + "|" + res.Update, nil
	}); err != nil {
		return res, err
	}
	if err := workflow.SetUpdateHandler(ctx, roundTripUpdate, func(ctx workflow.Context, arg string) (string, error) {
		res.Update = arg
		return "ack:" + arg, nil
	}); err != nil {
		return res, err
	}
	signals := workflow.GetSignalChannel(ctx, roundTripSignal)
	workflow.Go(ctx, func(ctx workflow.Context) { signals.Receive(ctx, &res.Signal) })

	if err := workflow.UpsertMemo(ctx, map[string]any{"progress": "upserted:" + secret}); err != nil {
		return res, err
	}

	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 100 * time.Millisecond, MaximumAttempts: 3},
	})
	var acts *roundTripActivities
	if err := workflow.ExecuteActivity(ctx, acts.Echo, "echo:"+secret).Get(ctx, &res.Echo); err != nil {
		return res, err
	}
	if err := workflow.ExecuteActivity(ctx, acts.Heartbeat, "hb:"+secret).Get(ctx, &res.Heartbeat); err != nil {
		return res, err
	}
	err := workflow.ExecuteActivity(ctx, acts.Fail, secret).Get(ctx, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return res, fmt.Errorf("failing activity: want an ApplicationError, got %v", err)
	}
	res.FailureMessage = appErr.Message()
	if err := appErr.Details(&res.FailureDetail); err != nil {
		return res, err
	}

	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID + "-child",
	})
	if err := workflow.ExecuteChildWorkflow(cctx, RoundTripChild, "child-in:"+secret).Get(ctx, &res.Child); err != nil {
		return res, err
	}

	if err := workflow.Await(ctx, func() bool { return res.Signal != "" && res.Update != "" }); err != nil {
		return res, err
	}
	return res, nil
}

// RoundTripChild is the child of RoundTripWorkflow.
func RoundTripChild(_ workflow.Context, in string) (string, error) {
	return "child-out:" + in, nil
}

// roundTripActivities are the round-trip workflow's activities. The
// heartbeat activity's first attempt waits for the test, which reads the
// heartbeat details as the server stores them while the attempt runs.
type roundTripActivities struct {
	heartbeatRecorded chan struct{} // closed by attempt 1 after its heartbeat
	release           chan struct{} // closed by the test to end attempt 1
}

func (a *roundTripActivities) Echo(_ context.Context, in string) (string, error) {
	return in, nil
}

// Heartbeat records details on attempt 1 and fails it (retryably) once the
// test has seen them; attempt 2 returns the details that the server kept
// from attempt 1, so they must decode in the new attempt.
func (a *roundTripActivities) Heartbeat(ctx context.Context, details string) (string, error) {
	if activity.HasHeartbeatDetails(ctx) {
		var got string
		if err := activity.GetHeartbeatDetails(ctx, &got); err != nil {
			return "", err
		}
		return got, nil
	}
	activity.RecordHeartbeat(ctx, details)
	select {
	case <-a.release:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return "", temporal.NewApplicationError("attempt 1 ends so that attempt 2 reads the heartbeat", "Retry")
}

// Fail fails for good with a message and details that both hold the
// secret: failure messages must be encrypted too.
func (a *roundTripActivities) Fail(_ context.Context, secret string) error {
	return temporal.NewNonRetryableApplicationError("boom:"+secret, "Boom", nil, "detail:"+secret)
}

// TestRoundTrip runs one workflow that uses every payload-bearing feature
// through the codec's data and failure converters, then reads what the
// server stored through a client without any codec.
func TestRoundTrip(t *testing.T) {
	k := harness.StartKMS(t)
	keyARN := k.MustCreateKey(t, "round trip")
	alias := "alias/" + uniqueName("roundtrip")
	k.MustCreateAlias(t, alias, keyARN)

	secret := uniqueName("kmscodec-secret")
	taskQueue := uniqueName("roundtrip")
	workflowID := uniqueName("roundtrip")

	// Worker and starter have codecs of their own, as separate processes.
	workerClient := dialCodec(t, "default", newCodec(t, k, codec.Options{KMS: k.NewClient(), KeyID: alias}))
	starterCodec := newCodec(t, k, codec.Options{KMS: k.NewClient(), KeyID: alias})
	starter := dialCodec(t, "default", starterCodec)
	raw := dialRaw(t, "default")

	acts := &roundTripActivities{release: make(chan struct{})}
	startWorker(t, workerClient, taskQueue, worker.Options{}, func(r worker.Registry) {
		r.RegisterWorkflow(RoundTripWorkflow)
		r.RegisterWorkflow(RoundTripChild)
		r.RegisterActivity(acts)
	})

	ctx := testContext(t, 2*time.Minute)
	run, err := starter.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        workflowID,
		TaskQueue: taskQueue,
		Memo:      map[string]any{"owner": "memo:" + secret},
	}, RoundTripWorkflow, secret)
	if err != nil {
		t.Fatalf("start workflow: %v", err)
	}

	// Heartbeat details are not in the history of an activity that ends
	// well: read them from the pending activity while attempt 1 waits.
	var (
		heartbeat   []foundPayload
		pendingDesc *workflowservice.DescribeWorkflowExecutionResponse
	)
	eventually(t, 30*time.Second, "heartbeat details recorded", func() error {
		desc, err := raw.DescribeWorkflowExecution(ctx, workflowID, run.GetRunID())
		if err != nil {
			return err
		}
		for _, pa := range desc.GetPendingActivities() {
			if pa.GetHeartbeatDetails() != nil {
				heartbeat = findPayloads(pa.GetHeartbeatDetails(), "heartbeat details")
				pendingDesc = desc
				return nil
			}
		}
		return errors.New("no pending activity with heartbeat details yet")
	})
	close(acts.release)

	signalArg, updateArg, queryArg := "sig:"+secret, "upd:"+secret, "q:"+secret
	if err := starter.SignalWorkflow(ctx, workflowID, run.GetRunID(), roundTripSignal, signalArg); err != nil {
		t.Fatalf("signal: %v", err)
	}
	handle, err := starter.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflowID,
		RunID:        run.GetRunID(),
		UpdateName:   roundTripUpdate,
		Args:         []any{updateArg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	var updateResult string
	if err := handle.Get(ctx, &updateResult); err != nil {
		t.Fatalf("update result: %v", err)
	}

	var result RoundTripResult
	if err := run.Get(ctx, &result); err != nil {
		t.Fatalf("workflow result: %v", err)
	}

	// The query's argument and result cross the server without being
	// stored; send it raw to see them as the server does.
	queryArgs, err := codec.NewDataConverter(starterCodec, codec.DataConverterOptions{}).ToPayloads(queryArg)
	if err != nil {
		t.Fatal(err)
	}
	rawQuery, err := raw.WorkflowService().QueryWorkflow(ctx, &workflowservice.QueryWorkflowRequest{
		Namespace: "default",
		Execution: &commonpb.WorkflowExecution{WorkflowId: workflowID, RunId: run.GetRunID()},
		Query:     &querypb.WorkflowQuery{QueryType: roundTripQuery, QueryArgs: queryArgs},
	})
	if err != nil {
		t.Fatalf("raw query: %v", err)
	}
	queried, err := starter.QueryWorkflow(ctx, workflowID, run.GetRunID(), roundTripQuery, queryArg)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	var queryResult string
	if err := queried.Get(&queryResult); err != nil {
		t.Fatal(err)
	}

	history := rawHistory(t, raw, workflowID, run.GetRunID())
	childHistory := rawHistory(t, raw, workflowID+"-child", "")
	desc, err := raw.DescribeWorkflowExecution(ctx, workflowID, run.GetRunID())
	if err != nil {
		t.Fatal(err)
	}

	stored := append(historyPayloads(history), historyPayloads(childHistory)...)
	// Whole responses are walked, not just the fields expected to hold
	// payloads, so that nothing the server returns is missed.
	everything := append([]foundPayload{}, stored...)
	everything = append(everything, findPayloads(desc, "describe")...)
	everything = append(everything, findPayloads(pendingDesc, "describe (activity pending)")...)
	everything = append(everything, findPayloads(rawQuery, "query response")...)

	t.Run("every stored payload is kms-envelope-v1", func(t *testing.T) {
		requireAllEncrypted(t, everything)
		t.Logf("%d payloads checked, from %v", len(everything), sources(everything))
	})

	t.Run("every payload-bearing feature was covered", func(t *testing.T) {
		// If a feature's payloads moved to a field the walk does not see,
		// the check above would pass vacuously; this catches that.
		want := []enumspb.EventType{
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
			enumspb.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
			enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
			enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
			enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED,
			enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
			enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED,
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
		}
		have := map[enumspb.EventType]int{}
		for _, f := range stored {
			have[f.Event]++
		}
		for _, e := range want {
			if have[e] == 0 {
				t.Errorf("no payload found in any %s event", e)
			}
		}
		if len(heartbeat) == 0 {
			t.Error("no heartbeat details payload found")
		}
		if n := len(findPayloads(desc.GetWorkflowExecutionInfo().GetMemo(), "memo")); n != 2 {
			t.Errorf("memo has %d payloads, want 2 (started with one, upserted one)", n)
		}
		if n := len(findPayloads(rawQuery, "query response")); n == 0 {
			t.Error("raw query result has no payload")
		}
	})

	t.Run("secret absent from raw bytes", func(t *testing.T) {
		for name, m := range map[string]proto.Message{
			"history": history, "child history": childHistory, "describe": desc,
			"describe with pending activity": pendingDesc, "query response": rawQuery,
		} {
			if bytes.Contains(mustMarshal(t, m), []byte(secret)) {
				t.Errorf("the secret is in plaintext in the raw %s", name)
			}
		}
	})

	t.Run("failure messages read Encoded failure", func(t *testing.T) {
		failures := findFailures(history)
		if len(failures) == 0 {
			t.Fatal("no failure in history; the failing activity did not record one")
		}
		for _, f := range failures {
			if f.GetMessage() != "Encoded failure" || f.GetStackTrace() != "" {
				t.Errorf("failure stored with a plaintext message or stack trace (message %d bytes)", len(f.GetMessage()))
			}
			if f.GetEncodedAttributes() == nil {
				t.Error("failure has no encoded attributes")
			}
		}
	})

	t.Run("codec client decodes every value", func(t *testing.T) {
		want := RoundTripResult{
			Echo:           "echo:" + secret,
			Heartbeat:      "hb:" + secret,
			FailureMessage: "boom:" + secret,
			FailureDetail:  "detail:" + secret,
			Signal:         signalArg,
			Update:         updateArg,
			Child:          "child-out:child-in:" + secret,
		}
		if result != want {
			t.Errorf("workflow result differs from what was sent:\n got %+v\nwant %+v", result, want)
		}
		if updateResult != "ack:"+updateArg {
			t.Errorf("update result = %q, want %q", updateResult, "ack:"+updateArg)
		}
		if want := queryArg + "|" + signalArg + "|" + updateArg; queryResult != want {
			t.Errorf("query result = %q, want %q", queryResult, want)
		}

		dc := codec.NewDataConverter(starterCodec, codec.DataConverterOptions{})
		memo := desc.GetWorkflowExecutionInfo().GetMemo().GetFields()
		for field, want := range map[string]string{"owner": "memo:" + secret, "progress": "upserted:" + secret} {
			var got string
			if err := dc.FromPayload(memo[field], &got); err != nil {
				t.Errorf("memo %s: %v", field, err)
			} else if got != want {
				t.Errorf("memo %s = %q, want %q", field, got, want)
			}
		}

		// Every stored payload, failure attributes included, decodes with
		// a fresh codec (empty caches), and the decoded payloads carry
		// the secret that the raw ones hid.
		fresh := newCodec(t, k, codec.Options{KeyID: alias})
		var plain bytes.Buffer
		for _, f := range everything {
			out, err := fresh.Decode([]*commonpb.Payload{f.Payload})
			if err != nil {
				t.Errorf("decode %s %s: %v", f.Source, f.Path, err)
				continue
			}
			if enc := string(out[0].GetMetadata()["encoding"]); !strings.HasPrefix(enc, "json/") && enc != "binary/null" {
				t.Errorf("decoded %s %s has encoding %q", f.Source, f.Path, enc)
			}
			plain.Write(out[0].GetData())
		}
		for _, s := range []string{"echo:", "hb:", "boom:", "detail:", "sig:", "upd:", "q:", "child-in:", "memo:", "upserted:"} {
			if !bytes.Contains(plain.Bytes(), []byte(s+secret)) {
				t.Errorf("no decoded payload holds the %q value", s)
			}
		}

		// The failure converter restores the message the server never saw.
		fc := codec.NewFailureConverter(codec.NewDataConverter(fresh, codec.DataConverterOptions{}))
		for _, e := range history.GetEvents() {
			if e.GetEventType() != enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED {
				continue
			}
			var appErr *temporal.ApplicationError
			err := fc.FailureToError(e.GetActivityTaskFailedEventAttributes().GetFailure())
			if !errors.As(err, &appErr) || appErr.Message() != "boom:"+secret || appErr.Type() != "Boom" {
				t.Errorf("failure converter did not restore the activity's ApplicationError")
			}
		}
	})
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
