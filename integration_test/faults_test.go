package integration

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// The fault tests run the codec against KMS through a harness.FaultProxy
// with timeouts shorter than the defaults, so that a fault reaches the
// codec, the SDK and the Temporal server within the test's time:
//
//   - each KMS call is tried twice at most by the AWS SDK, and bounded by
//     faultKMSTimeout, retries included;
//   - a workflow task that fails is retried by the server after
//     faultTaskTimeout at most (the SDK reports only a task's first
//     failure; later attempts time out);
//   - an activity whose task fails is retried after faultActivityTimeout
//     at most.
const (
	faultKMSTimeout      = time.Second
	faultTaskTimeout     = 4 * time.Second
	faultActivityTimeout = 5 * time.Second
)

// FaultWorkflow passes its input through an activity: four payloads
// (workflow input, activity input, activity result, workflow result),
// written by the starter and the worker, and read by the other.
func FaultWorkflow(ctx workflow.Context, in string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: faultActivityTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    200 * time.Millisecond,
			BackoffCoefficient: 2,
			MaximumInterval:    2 * time.Second,
		},
	})
	var out string
	if err := workflow.ExecuteActivity(ctx, FaultActivity, in).Get(ctx, &out); err != nil {
		return "", err
	}
	return "done:" + out, nil
}

// FaultActivity is FaultWorkflow's activity.
func FaultActivity(_ context.Context, in string) (string, error) {
	return "activity:" + in, nil
}

// faultResult is what FaultWorkflow returns for input id.
func faultResult(id string) string { return "done:activity:" + id }

// faultRig is a KMS emulator behind a fault proxy, with the key and the
// codec options of a fault test.
type faultRig struct {
	kms    *harness.KMS
	proxy  *harness.FaultProxy
	keyARN string
	alias  string
	opts   codec.Options // without KMS
}

// newFaultRig starts the emulator and the proxy, and creates a key and an
// alias for it. The codecs encrypt under the alias, or under the key ARN
// if opts.KeyID is set to anything.
func newFaultRig(t *testing.T, name string, opts codec.Options) *faultRig {
	t.Helper()
	k := harness.StartKMS(t)
	keyARN := k.MustCreateKey(t, name)
	alias := "alias/" + uniqueName(name)
	k.MustCreateAlias(t, alias, keyARN)
	// An alias, unless opts name the key: decryption then needs
	// DescribeKey too, to learn which key ARN the alias stands for.
	if opts.KeyID == "" {
		opts.KeyID = alias
	} else {
		opts.KeyID = keyARN
	}
	opts.KMSTimeout = faultKMSTimeout
	return &faultRig{kms: k, proxy: harness.StartFaultProxy(t, k.URL), keyARN: keyARN, alias: alias, opts: opts}
}

// codec returns a new codec, with empty caches and its own KMS client,
// that reaches KMS through the proxy.
func (r *faultRig) codec(t *testing.T) *codec.Codec {
	t.Helper()
	opts := r.opts
	opts.KMS = harness.NewKMSClient(r.proxy.URL, harness.FewRetries(2, 50*time.Millisecond))
	return newCodec(t, r.kms, opts)
}

// directCodec returns a codec that reaches the emulator without the
// proxy, for checking what was stored.
func (r *faultRig) directCodec(t *testing.T) *codec.Codec {
	t.Helper()
	return newCodec(t, r.kms, codec.Options{KeyID: r.alias})
}

// countingLogger is an SDK logger that counts warnings and errors by
// message and prints nothing: under KMS faults the SDK logs every failed
// task, which would drown the test's output.
type countingLogger struct {
	mu     sync.Mutex
	counts map[string]int
}

func newCountingLogger() *countingLogger { return &countingLogger{counts: map[string]int{}} }

func (l *countingLogger) Debug(string, ...any) {}
func (l *countingLogger) Info(string, ...any)  {}
func (l *countingLogger) Warn(msg string, _ ...any) {
	l.add("warn: " + msg)
}
func (l *countingLogger) Error(msg string, _ ...any) {
	l.add("error: " + msg)
}

func (l *countingLogger) add(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[key]++
}

func (l *countingLogger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.counts))
	for k := range l.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%q=%d", k, l.counts[k])
	}
	return strings.Join(parts, ", ")
}

// startFaultWorker starts a worker for FaultWorkflow on its own client
// with a new codec, and returns the codec and the worker's logger.
func startFaultWorker(t *testing.T, r *faultRig, taskQueue string) (*codec.Codec, *countingLogger) {
	t.Helper()
	c := r.codec(t)
	logger := newCountingLogger()
	opts := codecClientOptions("default", c)
	opts.Logger = logger
	wc := server.MustDial(t, opts)
	startWorker(t, wc, taskQueue, worker.Options{}, func(reg worker.Registry) {
		reg.RegisterWorkflow(FaultWorkflow)
		reg.RegisterActivity(FaultActivity)
	})
	return c, logger
}

// isKMSFailure reports whether err is the codec failing on KMS, in the
// form that makes Temporal retry a workflow task.
func isKMSFailure(err error) bool {
	var kmsErr *codec.KMSError
	var taskFailure *converter.WorkflowTaskFailureError
	return errors.As(err, &kmsErr) && kmsErr.Transient() && errors.As(err, &taskFailure)
}

// faultStarter starts FaultWorkflows and waits for their results the way
// an application would during a KMS fault: a start whose input cannot be
// encrypted, and a result that cannot be decrypted, are tried again.
type faultStarter struct {
	client    client.Client
	taskQueue string
	prefix    string
	next      atomic.Int64

	mu            sync.Mutex
	started       []string
	completed     map[string]bool
	startRetries  int // starts that failed on KMS and were tried again
	resultRetries int // results that failed to decrypt and were read again
	errs          []error
}

func newFaultStarter(t *testing.T, r *faultRig, taskQueue string) (*faultStarter, *codec.Codec) {
	t.Helper()
	c := r.codec(t)
	return &faultStarter{
		client:    dialCodec(t, "default", c),
		taskQueue: taskQueue,
		prefix:    uniqueName("fault"),
		completed: map[string]bool{},
	}, c
}

// The starter waits retryPause before trying again, doubling the pause
// up to maxRetryPause while failures go on.
const (
	retryPause    = 200 * time.Millisecond
	maxRetryPause = time.Second
)

// run starts one workflow and waits for its result. Anything but a KMS
// failure is recorded as an error.
func (s *faultStarter) run(ctx context.Context) {
	id := fmt.Sprintf("%s-%04d", s.prefix, s.next.Add(1))
	if err := s.runOne(ctx, id); err != nil {
		s.mu.Lock()
		s.errs = append(s.errs, err)
		s.mu.Unlock()
	}
}

func (s *faultStarter) runOne(ctx context.Context, id string) error {
	var run client.WorkflowRun
	for attempt := 0; ; attempt++ {
		var err error
		run, err = s.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID:                  id,
			TaskQueue:           s.taskQueue,
			WorkflowTaskTimeout: faultTaskTimeout,
		}, FaultWorkflow, id)
		if err == nil {
			break
		}
		if !isKMSFailure(err) {
			return fmt.Errorf("start %s: %w", id, err)
		}
		s.mu.Lock()
		s.startRetries++
		s.mu.Unlock()
		if err := pause(ctx, attempt); err != nil {
			return fmt.Errorf("start %s: KMS failures until the test ran out of time", id)
		}
	}
	s.mu.Lock()
	s.started = append(s.started, id)
	s.mu.Unlock()
	for attempt := 0; ; attempt++ {
		var out string
		err := run.Get(ctx, &out)
		if err == nil {
			if out != faultResult(id) {
				return fmt.Errorf("workflow %s returned %q, want %q", id, out, faultResult(id))
			}
			s.mu.Lock()
			s.completed[id] = true
			s.mu.Unlock()
			return nil
		}
		if !isKMSFailure(err) {
			return fmt.Errorf("workflow %s: %w", id, err)
		}
		s.mu.Lock()
		s.resultRetries++
		s.mu.Unlock()
		if err := pause(ctx, attempt); err != nil {
			return fmt.Errorf("result of %s: KMS failures until the test ran out of time", id)
		}
	}
}

// pause waits before retry number attempt (from 0), or until ctx ends.
func pause(ctx context.Context, attempt int) error {
	d := retryPause << min(attempt, 8)
	timer := time.NewTimer(min(d, maxRetryPause))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

func (s *faultStarter) counts() (started, completed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.started), len(s.completed)
}

// check fails the test unless every workflow started completed with its
// result, and returns the started workflows' IDs.
func (s *faultStarter) check(t *testing.T) []string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, err := range s.errs {
		t.Error(err)
	}
	for _, id := range s.started {
		if !s.completed[id] {
			t.Errorf("workflow %s was started but did not complete", id)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return append([]string(nil), s.started...)
}

// historyReport is what the raw histories of the fault tests hold.
type historyReport struct {
	payloads        int
	taskFailed      int // WorkflowTaskFailed events
	taskFailedKMS   int // ... whose failure is the codec failing on KMS
	taskTimedOut    int // WorkflowTaskTimedOut events
	activityRetries int // attempts beyond the first of activities that completed
}

// checkHistories reads the histories of ids as the server stores them and
// fails the test unless every payload in them is kms-envelope-v1 and
// opens with verifier, and every workflow completed rather than failed.
func checkHistories(t *testing.T, ids []string, verifier *codec.Codec) historyReport {
	t.Helper()
	raw := dialRaw(t, "default")
	fc := codec.NewFailureConverter(codec.NewDataConverter(verifier, codec.DataConverterOptions{}))
	var (
		mu  sync.Mutex
		rep historyReport
	)
	ctx := testContext(t, 2*time.Minute)
	err := parallel(len(ids), 8, func(i int) error {
		h, err := readHistory(ctx, raw, ids[i])
		if err != nil {
			return err
		}
		found := historyPayloads(h)
		for _, f := range found {
			if why := notEncrypted(f.Payload); why != "" {
				return fmt.Errorf("workflow %s: payload not encrypted (%s) at %s %s", ids[i], why, f.Source, f.Path)
			}
		}
		for _, f := range found {
			if _, err := verifier.Decode([]*commonpb.Payload{f.Payload}); err != nil {
				return fmt.Errorf("workflow %s: stored payload at %s %s does not open: %w", ids[i], f.Source, f.Path, err)
			}
		}
		var r historyReport
		r.payloads = len(found)
		events := h.GetEvents()
		if n := len(events); n == 0 || events[n-1].GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED {
			return fmt.Errorf("workflow %s did not end in WorkflowExecutionCompleted", ids[i])
		}
		for _, e := range events {
			switch e.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED:
				r.taskFailed++
				failure := e.GetWorkflowTaskFailedEventAttributes().GetFailure()
				if msg := fc.FailureToError(failure).Error(); strings.Contains(msg, "kmscodec: ") && strings.Contains(msg, "kms ") {
					r.taskFailedKMS++
				}
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
				r.taskTimedOut++
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
				r.activityRetries += int(e.GetActivityTaskStartedEventAttributes().GetAttempt()) - 1
			}
		}
		mu.Lock()
		rep.payloads += r.payloads
		rep.taskFailed += r.taskFailed
		rep.taskFailedKMS += r.taskFailedKMS
		rep.taskTimedOut += r.taskTimedOut
		rep.activityRetries += r.activityRetries
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := 4 * len(ids); rep.payloads < want {
		t.Fatalf("%d payloads in %d histories, want at least %d", rep.payloads, len(ids), want)
	}
	return rep
}

// readHistory reads a workflow's whole history as the server stores it.
// Unlike rawHistory it returns its error, for use off the test's
// goroutine.
func readHistory(ctx context.Context, c client.Client, workflowID string) (*historypb.History, error) {
	it := c.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("read history of %s: %w", workflowID, err)
		}
		h.Events = append(h.Events, e)
	}
	return h, nil
}

// checkNothingRemembered fails the test if a codec answered a lookup from
// its negative cache: transient KMS failures must never be remembered.
// The workflows retried the same wrapped keys throughout the faults, so a
// remembered failure would show as a hit.
func checkNothingRemembered(t *testing.T, name string, c *codec.Codec) codec.Stats {
	t.Helper()
	s := c.Stats()
	if s.NegativeCacheHits != 0 {
		t.Errorf("%s codec: %d negative cache hits after transient faults only", name, s.NegativeCacheHits)
	}
	return s
}

func formatStats(s codec.Stats) string {
	return fmt.Sprintf("KMS calls GenerateDataKey=%d Decrypt=%d DescribeKey=%d, failed %d; payloads failed on KMS %d; negative cache hits %d",
		s.GenerateDataKeyCalls, s.DecryptCalls, s.DescribeKeyCalls, s.KMSFailures, s.ErrorsKMS, s.NegativeCacheHits)
}

// TestKMSFaultBursts runs workflows continuously while KMS, behind the
// fault proxy, throttles, fails with 500 and 503, answers too slowly and
// drops connections, each in a burst. Data keys are used for two payloads
// only, so that KMS is asked all the time.
func TestKMSFaultBursts(t *testing.T) {
	const (
		goroutines  = 4
		burstFaults = 6
		burstWindow = 8 * time.Second
	)
	rig := newFaultRig(t, "fault-bursts", codec.Options{MaxPayloadsPerDataKey: 2})
	taskQueue := uniqueName("fault-bursts")
	workerCodec, logger := startFaultWorker(t, rig, taskQueue)
	starter, starterCodec := newFaultStarter(t, rig, taskQueue)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// Warm up: everything works without faults.
	for range 2 {
		starter.run(ctx)
	}
	if _, completed := starter.counts(); completed != 2 {
		starter.check(t)
		t.Fatalf("%d of 2 workflows completed before any fault", completed)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				starter.run(ctx)
			}
		}()
	}
	// stopStarters lets each starter finish the workflow it is on.
	stopped := false
	stopStarters := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	// If the test fails first, the starters give up at once.
	defer func() {
		cancel()
		stopStarters()
	}()

	var lastFaultEnded time.Time
	var emulatorAtLastFault int64
	for _, fault := range harness.Faults {
		_, before := starter.counts()
		done := rig.proxy.Inject(harness.FaultRule{Fault: fault, Count: burstFaults, For: burstWindow})
		select {
		case <-done:
		case <-time.After(burstWindow + 5*time.Second):
			t.Fatalf("%v burst did not end", fault)
		}
		lastFaultEnded, emulatorAtLastFault = time.Now(), emulatorCalls(rig.kms)
		// Workflows go on completing after each burst.
		eventually(t, 90*time.Second, fmt.Sprintf("workflows complete after the %v burst", fault), func() error {
			if _, completed := starter.counts(); completed < before+goroutines {
				return fmt.Errorf("%d completed since the burst began, want %d", completed-before, goroutines)
			}
			return nil
		})
		t.Logf("after the %v burst: %d faults of this kind injected", fault, rig.proxy.Injected(fault))
	}
	stopStarters()
	workflowsEnded := time.Now()
	resumed := emulatorCalls(rig.kms) - emulatorAtLastFault

	ids := starter.check(t)
	started, completed := starter.counts()
	for _, fault := range harness.Faults {
		if rig.proxy.Injected(fault) == 0 {
			t.Errorf("no %v fault was injected: no KMS request came during its burst", fault)
		}
	}
	rep := checkHistories(t, ids, rig.directCodec(t))
	ws := checkNothingRemembered(t, "worker", workerCodec)
	ss := checkNothingRemembered(t, "starter", starterCodec)
	// Which codec a fault hits depends on who asks KMS first; together
	// they must have seen the faults.
	if ws.ErrorsKMS+ss.ErrorsKMS == 0 {
		t.Errorf("no payload failed on KMS: the faults did not reach the codecs")
	}
	if rep.taskFailedKMS != rep.taskFailed {
		t.Errorf("%d of %d WorkflowTaskFailed events are not the codec failing on KMS", rep.taskFailed-rep.taskFailedKMS, rep.taskFailed)
	}
	if resumed == 0 {
		t.Errorf("no KMS request reached the emulator after the last burst ended")
	}
	t.Logf("workflows: %d started, %d completed, each with its result; starter retried %d starts and %d results",
		started, completed, starter.startRetries, starter.resultRetries)
	t.Logf("faults injected by the proxy: %s", rig.proxy)
	t.Logf("emulator: %s; %d requests after the last burst, which ended %v before the workflows did",
		rig.kms, resumed, workflowsEnded.Sub(lastFaultEnded).Round(time.Millisecond))
	t.Logf("histories: %d payloads, all kms-envelope-v1 and opening; %d WorkflowTaskFailed (%d on KMS), %d WorkflowTaskTimedOut, %d activity retries",
		rep.payloads, rep.taskFailed, rep.taskFailedKMS, rep.taskTimedOut, rep.activityRetries)
	t.Logf("worker codec: %s", formatStats(ws))
	t.Logf("starter codec: %s", formatStats(ss))
	t.Logf("worker SDK log: %s", logger)
}

// emulatorCalls is the number of requests the emulator has answered.
func emulatorCalls(k *harness.KMS) int64 {
	var n int64
	for _, c := range k.CallCounts() {
		n += c
	}
	return n
}

// TestKMSFaultsFailWorkflowTasksNotWorkflows shows, one fault at a time,
// what a worker does when KMS fails under a workflow task: the task fails
// and is retried, the workflow does not fail, and it completes once KMS
// answers. Only the worker goes through the fault proxy, and every
// payload it writes needs a GenerateDataKey.
func TestKMSFaultsFailWorkflowTasksNotWorkflows(t *testing.T) {
	rig := newFaultRig(t, "fault-tasks", codec.Options{MaxPayloadsPerDataKey: 1})
	taskQueue := uniqueName("fault-tasks")
	workerCodec, logger := startFaultWorker(t, rig, taskQueue)
	direct := rig.directCodec(t)
	starter := dialCodec(t, "default", direct)
	raw := dialRaw(t, "default")
	fc := codec.NewFailureConverter(codec.NewDataConverter(direct, codec.DataConverterOptions{}))
	ctx := testContext(t, 2*time.Minute)

	for _, step := range []struct {
		name string
		rule harness.FaultRule
		// event is what the fault leaves in the history.
		event enumspb.EventType
		// want are parts of the decrypted failure message, if any.
		want []string
	}{
		{
			// The worker cannot read the input, encrypts the failure
			// (GenerateDataKey works) and reports it.
			name:  "a Decrypt that fails fails the workflow task",
			rule:  harness.FaultRule{Fault: harness.Throttle, Ops: []string{harness.OpDecrypt}},
			event: enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED,
			want:  []string{"kmscodec: decode payload 1 of 1", "kms Decrypt", "ThrottlingException"},
		},
		{
			// The worker cannot encrypt the activity's input, nor then
			// the failure it would report: the SDK gives up on the task
			// (a recovered panic), which times out.
			name:  "a GenerateDataKey that fails times the workflow task out",
			rule:  harness.FaultRule{Fault: harness.InternalError, Ops: []string{harness.OpGenerateDataKey}},
			event: enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
		},
	} {
		t.Run(step.name, func(t *testing.T) {
			id := uniqueName("fault-task")
			rule := step.rule
			rule.For = time.Minute
			done := rig.proxy.Inject(rule)
			run, err := starter.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
				ID: id, TaskQueue: taskQueue, WorkflowTaskTimeout: faultTaskTimeout,
			}, FaultWorkflow, id)
			if err != nil {
				t.Fatalf("start: %v", err)
			}
			var seen *historypb.HistoryEvent
			eventually(t, 45*time.Second, step.event.String()+" in the history", func() error {
				for _, e := range rawHistory(t, raw, id, "").GetEvents() {
					if e.GetEventType() == step.event {
						seen = e
						return nil
					}
				}
				return errors.New("not yet")
			})
			rig.proxy.Clear()
			<-done

			var out string
			if err := run.Get(ctx, &out); err != nil || out != faultResult(id) {
				t.Fatalf("after the fault: result %q, error %v; want %q", out, err, faultResult(id))
			}
			if f := seen.GetWorkflowTaskFailedEventAttributes().GetFailure(); f != nil {
				if f.GetMessage() != "Encoded failure" || f.GetStackTrace() != "" {
					t.Errorf("the failure the server stores has message %q and a %d-byte stack trace, want them encrypted", f.GetMessage(), len(f.GetStackTrace()))
				}
				msg := fc.FailureToError(f).Error()
				for _, want := range step.want {
					if !strings.Contains(msg, want) {
						t.Errorf("the decrypted failure does not say %q", want)
					}
				}
			} else if len(step.want) > 0 {
				t.Errorf("no failure in the %v event", step.event)
			}
			rep := checkHistories(t, []string{id}, direct)
			t.Logf("history: %d payloads, all encrypted; %d WorkflowTaskFailed, %d WorkflowTaskTimedOut; proxy: %s",
				rep.payloads, rep.taskFailed, rep.taskTimedOut, rig.proxy)
		})
	}
	ws := checkNothingRemembered(t, "worker", workerCodec)
	if ws.ErrorsKMS == 0 {
		t.Error("the worker's codec saw no KMS failure")
	}
	t.Logf("worker codec: %s", formatStats(ws))
	t.Logf("worker SDK log: %s", logger)
}

// TestKMSOutage takes KMS away for 30 seconds, every request dropped,
// while workflows are started and a worker with empty caches (started
// during the outage) runs them. Data keys encrypt two payloads and live
// two seconds, so that no cache can carry the clients through. Nothing
// must reach the server unencrypted, nothing may complete on stale keys,
// and every workflow must complete once KMS is back.
func TestKMSOutage(t *testing.T) {
	const (
		startedBefore = 16 // started before the outage, queued for the worker
		startedDuring = 16 // started during the outage: their starts fail until it ends
		outage        = 30 * time.Second
	)
	// By key ARN: what the cold worker cannot do is Decrypt (with an
	// alias it would fail on DescribeKey first, as in the burst test).
	rig := newFaultRig(t, "outage", codec.Options{KeyID: "arn", MaxPayloadsPerDataKey: 2, DataKeyMaxAge: 2 * time.Second})
	taskQueue := uniqueName("outage")
	starter, starterCodec := newFaultStarter(t, rig, taskQueue)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	launch := func(n int) {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				starter.run(ctx)
			}()
		}
	}

	launch(startedBefore)
	eventually(t, time.Minute, "workflows started before the outage", func() error {
		if started, _ := starter.counts(); started < startedBefore {
			return fmt.Errorf("%d started", started)
		}
		return nil
	})

	emulatorBefore := emulatorCalls(rig.kms)
	done := rig.proxy.Inject(harness.FaultRule{Fault: harness.Drop, For: outage})
	outageBegan := time.Now()
	workerCodec, logger := startFaultWorker(t, rig, taskQueue)
	launch(startedDuring)
	select {
	case <-done:
	case <-time.After(outage + 10*time.Second):
		t.Fatal("the outage did not end")
	}
	outageEnded := time.Now()
	emulatorAtEnd := emulatorCalls(rig.kms)
	emulatorDuring := emulatorAtEnd - emulatorBefore
	_, completedDuring := starter.counts()
	injected := rig.proxy.InjectedTotal()
	workerDuring, starterDuring := workerCodec.Stats(), starterCodec.Stats()

	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(150 * time.Second):
		started, completed := starter.counts()
		t.Fatalf("%d of %d workflows completed 150s after the outage", completed, started)
	}
	recovery := time.Since(outageEnded)
	emulatorAfter := emulatorCalls(rig.kms) - emulatorAtEnd

	ids := starter.check(t)
	if len(ids) != startedBefore+startedDuring {
		t.Fatalf("%d workflows started, want %d", len(ids), startedBefore+startedDuring)
	}
	if emulatorDuring != 0 {
		t.Errorf("%d requests reached KMS during the outage", emulatorDuring)
	}
	if completedDuring != 0 {
		t.Errorf("%d workflows completed during the outage", completedDuring)
	}
	if injected == 0 || workerDuring.ErrorsKMS == 0 || starterDuring.ErrorsKMS == 0 {
		t.Errorf("the outage did not reach both codecs: %d requests dropped; payloads failed on KMS: worker %d, starter %d",
			injected, workerDuring.ErrorsKMS, starterDuring.ErrorsKMS)
	}
	rep := checkHistories(t, ids, rig.directCodec(t))
	if rep.taskFailed+rep.taskTimedOut == 0 {
		t.Error("no workflow task failed or timed out during the outage")
	}
	if rep.taskFailedKMS != rep.taskFailed {
		t.Errorf("%d of %d WorkflowTaskFailed events are not the codec failing on KMS", rep.taskFailed-rep.taskFailedKMS, rep.taskFailed)
	}
	ws := checkNothingRemembered(t, "worker", workerCodec)
	ss := checkNothingRemembered(t, "starter", starterCodec)
	if emulatorAfter == 0 {
		t.Error("no KMS request reached the emulator after the outage")
	}

	t.Logf("outage of %v: %d requests dropped, %d reached KMS, %d workflows completed during it; %d KMS requests after it",
		outageEnded.Sub(outageBegan).Round(time.Millisecond), injected, emulatorDuring, completedDuring, emulatorAfter)
	t.Logf("workflows: %d started (%d before the outage, %d during it), %d completed, each with its result, the last %v after the outage",
		len(ids), startedBefore, startedDuring, len(ids), recovery.Round(time.Millisecond))
	t.Logf("starter retried %d starts and %d results", starter.startRetries, starter.resultRetries)
	t.Logf("proxy: %s", rig.proxy)
	t.Logf("emulator: %s", rig.kms)
	t.Logf("histories: %d payloads, all kms-envelope-v1 and opening; %d WorkflowTaskFailed (%d on KMS), %d WorkflowTaskTimedOut, %d activity retries",
		rep.payloads, rep.taskFailed, rep.taskFailedKMS, rep.taskTimedOut, rep.activityRetries)
	t.Logf("worker codec: %s", formatStats(ws))
	t.Logf("starter codec: %s", formatStats(ss))
	t.Logf("worker SDK log: %s", logger)
}
