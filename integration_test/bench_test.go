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
// codec and with it, interleaved (without, with, without, with) so that
// drift in the machine's load falls on both alike: 150 workflows of one
// activity each, with about 1 KiB of input, started from 32 goroutines
// and served by one worker, after an uncounted warm-up round. It reports
// workflows per second each way and their ratio; an operation is the
// four rounds.
func BenchmarkWorkflows(b *testing.B) {
	const workflows = 150
	k, keyARN := benchKMS(b)
	input := make([]byte, 512)
	rand.Read(input)
	arg := fmt.Sprintf("%x", input) // 1 KiB of JSON string
	// The first workflows after the server starts run slower; a round
	// that is not counted keeps that off the first measured one.
	plain := server.MustDial(b, client.Options{Namespace: "default"})
	runWorkflows(b, plain, plain, 50, arg)
	var elapsed [2]time.Duration // without, with
	for b.Loop() {
		for round := range 4 {
			withCodec := round%2 == 1
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
			d := runWorkflows(b, workerClient, starter, workflows, arg)
			b.Logf("round %d, codec %v: %d workflows in %v", round+1, withCodec, workflows, d.Round(time.Millisecond))
			elapsed[round%2] += d
		}
	}
	without := float64(2*workflows*b.N) / elapsed[0].Seconds()
	with := float64(2*workflows*b.N) / elapsed[1].Seconds()
	b.ReportMetric(without, "plain-workflows/s")
	b.ReportMetric(with, "codec-workflows/s")
	b.ReportMetric(with/without, "codec/plain")
	b.Logf("%.0f workflows/s without the codec, %.0f with it: %.3f", without, with, with/without)
}

// runWorkflows starts a worker on its own task queue, then n workflows
// from 32 goroutines, and returns the time from the first start to the
// last result.
func runWorkflows(b *testing.B, workerClient, starter client.Client, n int, arg string) time.Duration {
	b.Helper()
	taskQueue := uniqueName("bench")
	w := worker.New(workerClient, taskQueue, worker.Options{})
	w.RegisterWorkflow(ActivityWorkflow)
	w.RegisterActivity(EchoActivity)
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	ctx := testContext(b, 5*time.Minute)
	prefix := uniqueName("bench")
	start := time.Now()
	err := parallel(n, 32, func(i int) error {
		run, err := starter.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("%s-%04d", prefix, i), TaskQueue: taskQueue}, ActivityWorkflow, arg)
		if err != nil {
			return err
		}
		var out string
		if err := run.Get(ctx, &out); err != nil {
			return err
		}
		if out != arg {
			return fmt.Errorf("workflow %d returned another value", i)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}
