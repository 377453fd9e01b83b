package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeFrontend is the part of Temporal's WorkflowService that keys uses:
// listing workflows (in two pages) and reading their histories.
type fakeFrontend struct {
	workflowservice.UnimplementedWorkflowServiceServer
	histories map[string][]*historypb.HistoryEvent // by workflow ID; absent: NotFound
	order     []string                             // listing order
	queries   []string
}

func (f *fakeFrontend) GetSystemInfo(context.Context, *workflowservice.GetSystemInfoRequest) (*workflowservice.GetSystemInfoResponse, error) {
	return &workflowservice.GetSystemInfoResponse{ServerVersion: "1.29.1", Capabilities: &workflowservice.GetSystemInfoResponse_Capabilities{}}, nil
}

func (f *fakeFrontend) ListWorkflowExecutions(_ context.Context, req *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	f.queries = append(f.queries, req.GetNamespace()+"|"+req.GetQuery())
	// One workflow per page, so that paging is exercised.
	i := 0
	if len(req.GetNextPageToken()) > 0 {
		i = int(req.GetNextPageToken()[0])
	}
	resp := &workflowservice.ListWorkflowExecutionsResponse{Executions: []*workflowpb.WorkflowExecutionInfo{{
		Execution: &commonpb.WorkflowExecution{WorkflowId: f.order[i], RunId: "run-" + f.order[i]},
	}}}
	if i+1 < len(f.order) {
		resp.NextPageToken = []byte{byte(i + 1)}
	}
	return resp, nil
}

func (f *fakeFrontend) GetWorkflowExecutionHistory(_ context.Context, req *workflowservice.GetWorkflowExecutionHistoryRequest) (*workflowservice.GetWorkflowExecutionHistoryResponse, error) {
	events, ok := f.histories[req.GetExecution().GetWorkflowId()]
	if !ok {
		// As the Temporal server does, send the service error as a gRPC
		// status; a plain error would arrive as Unknown, which the SDK
		// retries.
		return nil, serviceerror.ToStatus(serviceerror.NewNotFound("workflow not found")).Err()
	}
	return &workflowservice.GetWorkflowExecutionHistoryResponse{History: &historypb.History{Events: events}}, nil
}

// startFrontend serves f on 127.0.0.1 and returns its address.
func startFrontend(t *testing.T, f *fakeFrontend) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	workflowservice.RegisterWorkflowServiceServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// history is a started event with input and memo, and a signal.
func history(at time.Time, input, signal []*commonpb.Payload) []*historypb.HistoryEvent {
	return []*historypb.HistoryEvent{
		{
			EventId: 1, EventTime: timestamppb.New(at), EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
			Attributes: &historypb.HistoryEvent_WorkflowExecutionStartedEventAttributes{WorkflowExecutionStartedEventAttributes: &historypb.WorkflowExecutionStartedEventAttributes{
				Input: &commonpb.Payloads{Payloads: input},
				Memo:  &commonpb.Memo{Fields: map[string]*commonpb.Payload{"note": plain(1)[0]}},
			}},
		},
		{
			EventId: 2, EventTime: timestamppb.New(at.Add(time.Hour)), EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
			Attributes: &historypb.HistoryEvent_WorkflowExecutionSignaledEventAttributes{WorkflowExecutionSignaledEventAttributes: &historypb.WorkflowExecutionSignaledEventAttributes{
				SignalName: "approve",
				Input:      &commonpb.Payloads{Payloads: signal},
			}},
		},
	}
}

// TestKeysScansANamespace: keys reads every workflow's history through
// the Temporal API, page after page, counts payloads per master key, and
// goes on past a workflow deleted between listing and reading.
func TestKeysScansANamespace(t *testing.T) {
	day := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f := &fakeFrontend{
		order: []string{"order-1", "order-gone", "order-2"},
		histories: map[string][]*historypb.HistoryEvent{
			"order-1": history(day, encrypted(t, oldKeyARN, "orders", 2), encrypted(t, newKeyARN, "orders", 1)),
			"order-2": history(day.Add(48*time.Hour), encrypted(t, newKeyARN, "orders", 1), plain(1)),
		},
	}
	addr := startFrontend(t, f)

	var stdout, stderr bytes.Buffer
	noEnv := func(string) (string, bool) { return "", false }
	code := run([]string{"keys", "--address", addr, "--namespace", "orders", "--query", "WorkflowType = 'Order'", "-o", "json"},
		strings.NewReader(""), &stdout, &stderr, noEnv)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var got keysReport
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	if got.Histories != 3 || got.SkippedHistories != 1 {
		t.Errorf("histories %d, skipped %d; want 3 and 1", got.Histories, got.SkippedHistories)
	}
	// Each history holds a memo in plaintext; order-2's signal is too.
	if got.UnencryptedPayloads != 3 {
		t.Errorf("%d unencrypted payloads, want 3", got.UnencryptedPayloads)
	}
	want := []keyUsageEntry{
		{KeyARN: oldKeyARN, Payloads: 2, DataKeys: 1, Histories: 1, Namespaces: []string{"orders"}, LastWritten: ptr(day)},
		// Two data keys: each history's payloads were encrypted by another
		// codec, as by two worker processes.
		{KeyARN: newKeyARN, Payloads: 2, DataKeys: 2, Histories: 2, Namespaces: []string{"orders"}, LastWritten: ptr(day.Add(48 * time.Hour))},
	}
	if len(got.Keys) != len(want) {
		t.Fatalf("keys %+v, want %+v", got.Keys, want)
	}
	for i := range want {
		g, w := got.Keys[i], want[i]
		if g.KeyARN != w.KeyARN || g.Payloads != w.Payloads || g.DataKeys != w.DataKeys || g.Histories != w.Histories ||
			strings.Join(g.Namespaces, ",") != strings.Join(w.Namespaces, ",") || g.LastWritten == nil || !g.LastWritten.Equal(*w.LastWritten) {
			t.Errorf("key %d: %+v, want %+v", i, g, w)
		}
	}
	if !strings.Contains(stderr.String(), "skipping workflow order-gone") {
		t.Errorf("stderr does not report the missing workflow: %s", stderr.String())
	}
	if len(f.queries) != 3 || f.queries[0] != "orders|WorkflowType = 'Order'" {
		t.Errorf("list requests %q", f.queries)
	}
}

func ptr[T any](v T) *T { return &v }

// TestKeysConnectionFailure: an unreachable Temporal service is a
// failure (exit 1), not a usage error.
func TestKeysConnectionFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	var stdout, stderr bytes.Buffer
	env := func(name string) (string, bool) {
		if name == "TEMPORAL_ADDRESS" {
			return addr, true
		}
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan int)
	go func() {
		done <- run([]string{"keys", "--namespace", "orders"}, strings.NewReader(""), &stdout, &stderr, env)
	}()
	select {
	case code := <-done:
		if code != exitFailure {
			t.Errorf("exit %d, want %d", code, exitFailure)
		}
		if !strings.Contains(stderr.String(), "connecting to Temporal at "+addr) {
			t.Errorf("stderr: %s", stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("keys did not give up on an unreachable server")
	}
}

func TestKeysListsTheReplicasOfAMultiRegionKeyAsOneKey(t *testing.T) {
	const (
		east         = "arn:aws:kms:us-east-1:111122223333:key/mrk-0123456789abcdef0123456789abcdef"
		west         = "arn:aws:kms:us-west-2:111122223333:key/mrk-0123456789abcdef0123456789abcdef"
		singleEast   = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
		singleWest   = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
		otherAccount = "arn:aws:kms:us-west-2:444455556666:key/mrk-0123456789abcdef0123456789abcdef"
	)
	inv := newInventory()
	h := inv.beginHistory()
	for _, arn := range []string{west, east, east, singleEast, singleWest, otherAccount} {
		for _, p := range encrypted(t, arn, "orders", 1) {
			h.add(p, time.Time{})
		}
	}
	var buf bytes.Buffer
	if err := inv.writeJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var got keysReport
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	byARN := map[string]keyUsageEntry{}
	for _, k := range got.Keys {
		byARN[k.KeyARN] = k
	}
	if len(got.Keys) != 4 {
		t.Fatalf("%d keys listed, want 4 (the replicas as one): %+v", len(got.Keys), got.Keys)
	}
	mrk := byARN[east]
	if mrk.Payloads != 3 || mrk.DataKeys != 3 || mrk.Histories != 1 || strings.Join(mrk.ReplicaARNs, " ") != east+" "+west {
		t.Errorf("the multi-Region key: %+v; want 3 payloads, 3 data keys, 1 history, both replicas", mrk)
	}
	for _, arn := range []string{singleEast, singleWest, otherAccount} {
		if k := byARN[arn]; k.Payloads != 1 || k.ReplicaARNs != nil {
			t.Errorf("%s: %+v; want a key of its own with 1 payload", arn, k)
		}
	}

	buf.Reset()
	if err := inv.writeText(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), east+" (and its replicas in us-west-2)") || !strings.Contains(buf.String(), "under 4 keys") {
		t.Errorf("text listing:\n%s", buf.String())
	}
}
