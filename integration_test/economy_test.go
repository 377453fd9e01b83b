package integration

import (
	"fmt"
	"sync"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// EchoWorkflow returns its input: one encrypted payload in (the input)
// and one out (the result).
func EchoWorkflow(_ workflow.Context, in string) (string, error) {
	return in, nil
}

// economyRun starts n echo workflows from 32 goroutines, with a client
// and a worker that each have their own codec built from codecOpts, and
// waits for all of them. It returns their workflow IDs.
func economyRun(t *testing.T, k *harness.KMS, n int, codecOpts codec.Options) []string {
	t.Helper()
	taskQueue := uniqueName("economy")
	workerClient := dialCodec(t, "default", newCodec(t, k, codecOpts))
	w := startWorker(t, workerClient, taskQueue, worker.Options{}, func(r worker.Registry) {
		r.RegisterWorkflow(EchoWorkflow)
	})
	starter := dialCodec(t, "default", newCodec(t, k, codecOpts))

	ctx := testContext(t, 5*time.Minute)
	ids := make([]string, n)
	runs := make([]client.WorkflowRun, n)
	prefix := uniqueName("economy")
	err := parallel(n, 32, func(i int) error {
		ids[i] = fmt.Sprintf("%s-%04d", prefix, i)
		run, err := starter.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: ids[i], TaskQueue: taskQueue}, EchoWorkflow, ids[i])
		runs[i] = run
		return err
	})
	if err != nil {
		t.Fatalf("start workflows: %v", err)
	}
	err = parallel(n, 32, func(i int) error {
		var out string
		if err := runs[i].Get(ctx, &out); err != nil {
			return err
		}
		if out != ids[i] {
			return fmt.Errorf("workflow %d returned a different value", i)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("workflow results: %v", err)
	}
	w.Stop()
	return ids
}

// storedPayloads reads the histories of ids through a client without codec
// and returns their payloads, one slice per workflow.
func storedPayloads(t *testing.T, ids []string) [][]*commonpb.Payload {
	t.Helper()
	raw := dialRaw(t, "default")
	out := make([][]*commonpb.Payload, len(ids))
	var mu sync.Mutex
	_ = parallel(len(ids), 16, func(i int) error {
		var ps []*commonpb.Payload
		for _, f := range historyPayloads(rawHistory(t, raw, ids[i], "")) {
			ps = append(ps, f.Payload)
		}
		mu.Lock()
		out[i] = ps
		mu.Unlock()
		return nil
	})
	return out
}

// distinctDataKeys counts the different wrapped data keys among payloads,
// that is the data keys a reader must have KMS unwrap.
func distinctDataKeys(t *testing.T, histories [][]*commonpb.Payload) (payloads, keys int) {
	t.Helper()
	seen := map[string]bool{}
	for _, h := range histories {
		for _, p := range h {
			env, err := envelope.Parse(p)
			if err != nil {
				t.Fatalf("stored payload is not an envelope: %v", err)
			}
			seen[string(env.WrappedKey)] = true
			payloads++
		}
	}
	return payloads, len(seen)
}

// TestKMSEconomy counts KMS calls at the emulator, not in the codec, to
// show that data-key caching keeps KMS traffic (and its cost and rate
// limits) independent of the number of workflows.
func TestKMSEconomy(t *testing.T) {
	const workflows = 1000

	k := harness.StartKMS(t)
	keyARN := k.MustCreateKey(t, "economy")
	alias := "alias/" + uniqueName("economy")
	k.MustCreateAlias(t, alias, keyARN)

	var ids []string
	t.Run("1000 concurrent workflows use a handful of data keys", func(t *testing.T) {
		start := time.Now()
		ids = economyRun(t, k, workflows, codec.Options{KeyID: alias})
		gdk := k.Calls(harness.OpGenerateDataKey)
		t.Logf("%d workflows in %v; KMS calls at the emulator: %s", workflows, time.Since(start).Round(time.Millisecond), k)
		// One data key per codec (client and worker) with the default
		// limits; a little slack for a concurrent first use.
		if gdk < 2 || gdk > 4 {
			t.Errorf("GenerateDataKey calls = %d for %d workflows, want 2..4", gdk, workflows)
		}
	})

	t.Run("fresh codec decrypts each data key once", func(t *testing.T) {
		if ids == nil {
			t.Fatal("previous subtest did not run the workflows")
		}
		histories := storedPayloads(t, ids)
		payloads, keys := distinctDataKeys(t, histories)

		// A new process: new codec, empty caches. Histories are decoded
		// concurrently, as a worker or codec server would.
		fresh := newCodec(t, k, codec.Options{KeyID: alias})
		before := k.Calls(harness.OpDecrypt)
		if err := parallel(len(histories), 16, func(i int) error {
			_, err := fresh.Decode(histories[i])
			return err
		}); err != nil {
			t.Fatalf("decode stored payloads: %v", err)
		}
		decrypts := k.Calls(harness.OpDecrypt) - before
		t.Logf("decoded %d payloads under %d distinct data keys with %d Decrypt calls", payloads, keys, decrypts)
		if payloads != 2*workflows {
			t.Errorf("found %d stored payloads, want %d (input and result of each workflow)", payloads, 2*workflows)
		}
		if decrypts < 1 || decrypts > int64(keys) {
			t.Errorf("Decrypt calls = %d, want between 1 and %d (one per distinct data key)", decrypts, keys)
		}
	})

	t.Run("one data key per payload when MaxPayloadsPerDataKey is 1", func(t *testing.T) {
		const n = 20
		before := k.Calls(harness.OpGenerateDataKey)
		ids := economyRun(t, k, n, codec.Options{KeyID: alias, MaxPayloadsPerDataKey: 1})
		gdk := k.Calls(harness.OpGenerateDataKey) - before
		payloads, keys := distinctDataKeys(t, storedPayloads(t, ids))
		t.Logf("%d workflows: %d payloads stored, %d distinct data keys, %d GenerateDataKey calls", n, payloads, keys, gdk)
		if payloads != 2*n {
			t.Errorf("found %d stored payloads, want %d", payloads, 2*n)
		}
		if gdk != int64(payloads) || keys != payloads {
			t.Errorf("GenerateDataKey calls = %d and distinct data keys = %d, want both = %d payloads", gdk, keys, payloads)
		}
	})
}
