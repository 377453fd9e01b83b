package integration

// Benchmarks of what the codec benchmarks in the library cannot show: the
// cold path, where a data key must come from KMS (here the local-kms
// emulator over HTTP, through the real aws-sdk-go-v2 client), and whole
// workflows on the Temporal dev server with and without the codec. KMS
// calls are counted at the emulator. docs/PERFORMANCE.md records the
// figures; `make bench` runs these with the library's benchmarks.

import (
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// benchKMS starts an emulator with one key. Fresh codecs share its client
// (and so its open connection): a cold codec in a long-running worker
// finds the KMS client already connected.
func benchKMS(b *testing.B) (*harness.KMS, string) {
	b.Helper()
	k := harness.StartKMS(b)
	return k, k.MustCreateKey(b, "bench")
}

func benchPayloads(n, size int) []*commonpb.Payload {
	out := make([]*commonpb.Payload, n)
	for i := range out {
		data := make([]byte, size)
		rand.Read(data)
		out[i] = &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: data}
	}
	return out
}

// kmsCallsPerOp reports the KMS calls of op counted at the emulator since
// before, per benchmark iteration.
func kmsCallsPerOp(b *testing.B, k *harness.KMS, op string, before int64) {
	b.ReportMetric(float64(k.Calls(op)-before)/float64(b.N), "kms-calls/op")
}

// BenchmarkColdEncode is the first Encode of a fresh codec: one
// GenerateDataKey call and the sealing of one 1 KiB payload.
func BenchmarkColdEncode(b *testing.B) {
	k, keyARN := benchKMS(b)
	in := benchPayloads(1, 1<<10)
	before := k.Calls(harness.OpGenerateDataKey)
	for b.Loop() {
		b.StopTimer()
		c := newCodec(b, k, codec.Options{KMS: k.Client, KeyID: keyARN})
		b.StartTimer()
		if _, err := c.Encode(in); err != nil {
			b.Fatal(err)
		}
	}
	kmsCallsPerOp(b, k, harness.OpGenerateDataKey, before)
}

// BenchmarkColdDecode is the first Decode of a fresh codec: one Decrypt
// call and the opening of one 1 KiB payload.
func BenchmarkColdDecode(b *testing.B) {
	k, keyARN := benchKMS(b)
	encoded, err := newCodec(b, k, codec.Options{KMS: k.Client, KeyID: keyARN}).Encode(benchPayloads(1, 1<<10))
	if err != nil {
		b.Fatal(err)
	}
	before := k.Calls(harness.OpDecrypt)
	for b.Loop() {
		b.StopTimer()
		c := newCodec(b, k, codec.Options{KMS: k.Client, KeyID: keyARN})
		b.StartTimer()
		if _, err := c.Decode(encoded); err != nil {
			b.Fatal(err)
		}
	}
	kmsCallsPerOp(b, k, harness.OpDecrypt, before)
}

// BenchmarkColdDecodeConcurrent256 is a fresh codec handed 256 payloads
// under one data key at once, from 256 goroutines, as a worker restarted
// under load is: one Decrypt call, the other 255 decodes waiting for it.
// An operation is the time until the last decode returns.
func BenchmarkColdDecodeConcurrent256(b *testing.B) {
	const n = 256
	k, keyARN := benchKMS(b)
	encoded, err := newCodec(b, k, codec.Options{KMS: k.Client, KeyID: keyARN}).Encode(benchPayloads(n, 1<<10))
	if err != nil {
		b.Fatal(err)
	}
	before := k.Calls(harness.OpDecrypt)
	for b.Loop() {
		b.StopTimer()
		c := newCodec(b, k, codec.Options{KMS: k.Client, KeyID: keyARN})
		var ready, done sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, n)
		for i := range n {
			ready.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				ready.Done()
				<-start
				if _, err := c.Decode(encoded[i : i+1]); err != nil {
					errs <- err
				}
			}()
		}
		ready.Wait()
		b.StartTimer()
		close(start)
		done.Wait()
		b.StopTimer()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	kmsCallsPerOp(b, k, harness.OpDecrypt, before)
}

// BenchmarkKMSCallsPer10000Payloads encodes 10,000 payloads of 1 KiB
// with a codec at its default limits and with one data key per payload,
// the way Tink's KMS envelope AEAD works, then decodes them all with a
// fresh codec, 16 goroutines each way; it reports the calls counted at
// the emulator per 10,000 payloads.
func BenchmarkKMSCallsPer10000Payloads(b *testing.B) {
	const n = 10_000
	for _, tt := range []struct {
		name        string
		maxPayloads int64
	}{{"Defaults", 0}, {"OneDataKeyPerPayload", 1}} {
		b.Run(tt.name, func(b *testing.B) {
			k, keyARN := benchKMS(b)
			in := benchPayloads(n, 1<<10)
			out := make([]*commonpb.Payload, n)
			gdk, dec := k.Calls(harness.OpGenerateDataKey), k.Calls(harness.OpDecrypt)
			for b.Loop() {
				enc := newCodec(b, k, codec.Options{KMS: k.Client, KeyID: keyARN, MaxPayloadsPerDataKey: tt.maxPayloads})
				if err := parallel(n, 16, func(i int) error {
					p, err := enc.Encode(in[i : i+1])
					if err == nil {
						out[i] = p[0]
					}
					return err
				}); err != nil {
					b.Fatal(err)
				}
				fresh := newCodec(b, k, codec.Options{KMS: k.Client, KeyID: keyARN})
				if err := parallel(n, 16, func(i int) error {
					_, err := fresh.Decode(out[i : i+1])
					return err
				}); err != nil {
					b.Fatal(err)
				}
			}
			per10k := func(op string, before int64) float64 {
				return float64(k.Calls(op)-before) / float64(b.N) * 10_000 / n
			}
			b.ReportMetric(per10k(harness.OpGenerateDataKey, gdk), "GenerateDataKey/10k-payloads")
			b.ReportMetric(per10k(harness.OpDecrypt, dec), "Decrypt/10k-payloads")
		})
	}
}

// ActivityWorkflow runs one activity on its input and returns the result:
// four payloads encoded and several decoded per workflow.
func ActivityWorkflow(ctx workflow.Context, in string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	var out string
	err := workflow.ExecuteActivity(ctx, EchoActivity, in).Get(ctx, &out)
	return out, err
}

// EchoActivity returns its input.
func EchoActivity(in string) (string, error) { return in, nil }

// BenchmarkWorkflows runs the same workload on the dev server without the
// codec and with it, in the order without, with, with, without, after an
// uncounted warm-up round. The dev server slows down as its store fills
// with workflows, and the machine's load drifts; in that order a drift
// that is steady over an operation falls on both alike. The workload: 32
// goroutines each start a workflow of one activity, with about 1 KiB of
// input, wait for its result and start the next, for 3 seconds, served by
// one worker. It reports the workflows completed per second each way and
// their ratio.
//
// Now and then a workflow task on the dev server waits about two seconds
// in the task queue's backlog, with or without the codec; with a fixed
// time and 32 workflows in flight, that costs a round a few workflows
// rather than two seconds.
func BenchmarkWorkflows(b *testing.B) {
	const roundTime = 3 * time.Second
	order := []bool{false, true, true, false} // with the codec?
	k, keyARN := benchKMS(b)
	input := make([]byte, 512)
	rand.Read(input)
	arg := fmt.Sprintf("%x", input) // 1 KiB of JSON string
	plain := server.MustDial(b, client.Options{Namespace: "default"})
	runWorkflows(b, plain, plain, time.Second, arg) // warm-up
	var completed [2]int                            // without, with
	for b.Loop() {
		for round, withCodec := range order {
			var opts client.Options
			if withCodec {
				// The worker and the starter are separate codecs, as
				// separate processes would have.
				opts = codecClientOptions("default", newCodec(b, k, codec.Options{KeyID: keyARN}))
			} else {
				opts = client.Options{Namespace: "default"}
			}
			workerClient := server.MustDial(b, opts)
			if withCodec {
				opts = codecClientOptions("default", newCodec(b, k, codec.Options{KeyID: keyARN}))
			}
			starter := server.MustDial(b, opts)
			n := runWorkflows(b, workerClient, starter, roundTime, arg)
			b.Logf("round %d, codec %v: %d workflows in %v", round+1, withCodec, n, roundTime)
			if withCodec {
				completed[1] += n
			} else {
				completed[0] += n
			}
		}
	}
	perMode := float64(b.N*len(order)/2) * roundTime.Seconds()
	without, with := float64(completed[0])/perMode, float64(completed[1])/perMode
	b.ReportMetric(without, "plain-workflows/s")
	b.ReportMetric(with, "codec-workflows/s")
	b.ReportMetric(with/without, "codec/plain")
	b.Logf("%.0f workflows/s without the codec, %.0f with it: %.3f", without, with, with/without)
}

// runWorkflows starts a worker on its own task queue, then runs
// ActivityWorkflow from 32 goroutines, each starting the next workflow
// when the last one returns, for d. It returns how many workflows
// completed within d, and waits for those still running. The worker
// polls with 8 pollers of each kind rather than the SDK's 2, enough to
// keep up with 32 workflows in flight.
func runWorkflows(b *testing.B, workerClient, starter client.Client, d time.Duration, arg string) int {
	b.Helper()
	const goroutines = 32
	taskQueue := uniqueName("bench")
	w := worker.New(workerClient, taskQueue, worker.Options{MaxConcurrentWorkflowTaskPollers: 8, MaxConcurrentActivityTaskPollers: 8})
	w.RegisterWorkflow(ActivityWorkflow)
	w.RegisterActivity(EchoActivity)
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	ctx := testContext(b, 5*time.Minute)
	prefix := uniqueName("bench")
	deadline := time.Now().Add(d)
	var completed atomic.Int64
	err := parallel(goroutines, goroutines, func(g int) error {
		for i := 0; time.Now().Before(deadline); i++ {
			id := fmt.Sprintf("%s-%02d-%04d", prefix, g, i)
			run, err := starter.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: taskQueue}, ActivityWorkflow, arg)
			if err != nil {
				return err
			}
			var out string
			if err := run.Get(ctx, &out); err != nil {
				return err
			}
			if out != arg {
				return fmt.Errorf("workflow %s returned another value", id)
			}
			if time.Now().Before(deadline) {
				completed.Add(1)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return int(completed.Load())
}
