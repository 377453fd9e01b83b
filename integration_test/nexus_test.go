package integration

import (
	"context"
	"testing"
	"time"

	"github.com/nexus-rpc/sdk-go/nexus"
	enumspb "go.temporal.io/api/enums/v1"
	nexuspb "go.temporal.io/api/nexus/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporalnexus"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

const nexusService = "kmscodec-nexus"

// NexusCallerInput names the endpoint the caller workflow calls.
type NexusCallerInput struct {
	Endpoint string
	Value    string
}

// NexusCallerWorkflow calls both operations of the Nexus service and
// returns their results joined.
func NexusCallerWorkflow(ctx workflow.Context, in NexusCallerInput) (string, error) {
	c := workflow.NewNexusClient(in.Endpoint, nexusService)
	opts := workflow.NexusOperationOptions{ScheduleToCloseTimeout: time.Minute}
	var syncOut, workflowOut string
	if err := c.ExecuteOperation(ctx, nexusEchoOperation, in.Value, opts).Get(ctx, &syncOut); err != nil {
		return "", err
	}
	if err := c.ExecuteOperation(ctx, nexusWorkflowOperation, in.Value, opts).Get(ctx, &workflowOut); err != nil {
		return "", err
	}
	return syncOut + "|" + workflowOut, nil
}

// NexusHandlerWorkflow is the workflow the handler starts for the
// workflow-run operation.
func NexusHandlerWorkflow(_ workflow.Context, in string) (string, error) {
	return "workflow:" + in, nil
}

var (
	nexusEchoOperation = nexus.NewSyncOperation("echo", func(_ context.Context, in string, _ nexus.StartOperationOptions) (string, error) {
		return "sync:" + in, nil
	})
	nexusWorkflowOperation = temporalnexus.NewWorkflowRunOperation("run-workflow", NexusHandlerWorkflow,
		func(_ context.Context, in string, _ nexus.StartOperationOptions) (client.StartWorkflowOptions, error) {
			return client.StartWorkflowOptions{ID: nexusHandlerWorkflowID(in)}, nil
		})
)

// nexusHandlerWorkflowID is the ID of the workflow the handler starts for
// input in, so that the test can read its history.
func nexusHandlerWorkflowID(in string) string { return "nexus-handler-" + in }

// TestNexusPayloadsNameTheNamespaceThatWroteThem runs a Nexus operation
// across namespaces: a caller workflow in ns1 calls a synchronous
// operation and a workflow-run operation handled by a worker in ns2, each
// side with a codec whose Options.Namespace is its own. The SDK's Nexus
// serialization context names no namespace, so every payload must name
// the namespace of the side that wrote it: the caller's workflow and the
// operations' inputs ns1; the operations' results, and the handler
// workflow's payloads, ns2. And every payload is encrypted.
func TestNexusPayloadsNameTheNamespaceThatWroteThem(t *testing.T) {
	k := harness.StartKMS(t)
	keyARN := k.MustCreateKey(t, "nexus")
	ctx := testContext(t, 3*time.Minute)

	handlerQueue, callerQueue, endpoint := uniqueName("nexus-handler"), uniqueName("nexus-caller"), uniqueName("kmscodec-nexus")
	value := uniqueName("value")
	_, err := dialRaw(t, namespace2).OperatorService().CreateNexusEndpoint(ctx, &operatorservice.CreateNexusEndpointRequest{
		Spec: &nexuspb.EndpointSpec{
			Name: endpoint,
			Target: &nexuspb.EndpointTarget{Variant: &nexuspb.EndpointTarget_Worker_{Worker: &nexuspb.EndpointTarget_Worker{
				Namespace: namespace2, TaskQueue: handlerQueue,
			}}},
		},
	})
	if err != nil {
		t.Fatalf("create Nexus endpoint: %v", err)
	}

	service := nexus.NewService(nexusService)
	if err := service.Register(nexusEchoOperation, nexusWorkflowOperation); err != nil {
		t.Fatal(err)
	}
	handlerCodec := newCodec(t, k, codec.Options{KeyID: keyARN, Namespace: namespace2})
	startWorker(t, dialCodec(t, namespace2, handlerCodec), handlerQueue, worker.Options{}, func(r worker.Registry) {
		r.RegisterWorkflow(NexusHandlerWorkflow)
		r.RegisterNexusService(service)
	})
	callerCodec := newCodec(t, k, codec.Options{KeyID: keyARN, Namespace: namespace1})
	caller := dialCodec(t, namespace1, callerCodec)
	startWorker(t, caller, callerQueue, worker.Options{}, func(r worker.Registry) {
		r.RegisterWorkflow(NexusCallerWorkflow)
	})

	run, err := caller.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: uniqueName("nexus-caller"), TaskQueue: callerQueue},
		NexusCallerWorkflow, NexusCallerInput{Endpoint: endpoint, Value: value})
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := run.Get(ctx, &out); err != nil || out != "sync:"+value+"|workflow:"+value {
		t.Fatalf("caller workflow: result %q, err %v", out, err)
	}

	callerPayloads := historyPayloads(rawHistory(t, dialRaw(t, namespace1), run.GetID(), run.GetRunID()))
	requireAllEncrypted(t, callerPayloads)
	// Who wrote each payload of the caller's history.
	writtenBy := map[enumspb.EventType]string{
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:   namespace1,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: namespace1,
		enumspb.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED:    namespace1, // the operation's input
		enumspb.EVENT_TYPE_NEXUS_OPERATION_COMPLETED:    namespace2, // the operation's result
	}
	seen := map[enumspb.EventType]int{}
	for _, f := range callerPayloads {
		want, ok := writtenBy[f.Event]
		if !ok {
			t.Errorf("unexpected payload in the caller's history at %s %s", f.Source, f.Path)
			continue
		}
		seen[f.Event]++
		if got := contextOf(t, f.Payload)[codec.NamespaceContextKey]; got != want {
			t.Errorf("caller's history, %s %s: %s = %q, want %q", f.Source, f.Path, codec.NamespaceContextKey, got, want)
		}
	}
	if seen[enumspb.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED] != 2 || seen[enumspb.EVENT_TYPE_NEXUS_OPERATION_COMPLETED] != 2 {
		t.Errorf("payloads of the two operations: %d scheduled, %d completed, want 2 and 2",
			seen[enumspb.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED], seen[enumspb.EVENT_TYPE_NEXUS_OPERATION_COMPLETED])
	}

	// The handler's workflow, in ns2: started by the handler (its input
	// under a workflow context for ns2) and completed by the handler's
	// worker (its result under the Nexus context, as it travels back to
	// the caller): all ns2.
	handlerPayloads := historyPayloads(rawHistory(t, dialRaw(t, namespace2), nexusHandlerWorkflowID(value), ""))
	requireAllEncrypted(t, handlerPayloads)
	for _, f := range handlerPayloads {
		if got := contextOf(t, f.Payload)[codec.NamespaceContextKey]; got != namespace2 {
			t.Errorf("handler's history, %s %s: %s = %q, want %q", f.Source, f.Path, codec.NamespaceContextKey, got, namespace2)
		}
	}
	if len(handlerPayloads) < 2 {
		t.Errorf("%d payloads in the handler workflow's history, want its input and result", len(handlerPayloads))
	}
}
