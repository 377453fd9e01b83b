package integration

import (
	"errors"
	"fmt"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/worker"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// TestKeyRotation moves the codec's alias from key A to key B while
// workflows written under A are still running: a worker with A in its
// allow-list finishes them under B, and a codec without A refuses A's
// payloads before calling KMS.
func TestKeyRotation(t *testing.T) {
	const workflows = 3
	k := harness.StartKMS(t)
	keyA := k.MustCreateKey(t, "rotation A")
	keyB := k.MustCreateKey(t, "rotation B")
	alias := "alias/" + uniqueName("rotation")
	k.MustCreateAlias(t, alias, keyA)
	taskQueue := uniqueName("rotation")
	secret := uniqueName("kmscodec-secret")
	ctx := testContext(t, 3*time.Minute)
	raw := dialRaw(t, "default")

	// Phase 1: everything under A; the workflows block on the signal.
	codecA := newCodec(t, k, codec.Options{KeyID: alias})
	workerA := startWorker(t, dialCodec(t, "default", codecA), taskQueue, worker.Options{}, registerTwoStep)
	starterA := dialCodec(t, "default", newCodec(t, k, codec.Options{KeyID: alias}))
	runs := startTwoStepWorkflows(t, ctx, starterA, raw, taskQueue, "rotation", secret, workflows)
	workerA.Stop()

	// Phase 2: rotate. New worker and client (new processes) encrypt
	// under the alias, now B, and may still decrypt A.
	k.MustUpdateAlias(t, alias, keyB)
	rotated := codec.Options{KeyID: alias, DecryptKeyIDs: []string{keyA}}
	startWorker(t, dialCodec(t, "default", newCodec(t, k, rotated)), taskQueue, worker.Options{}, registerTwoStep)
	starterB := dialCodec(t, "default", newCodec(t, k, rotated))
	signalTwoStepWorkflows(t, ctx, starterB, runs, secret)

	t.Run("running workflows complete after rotation", func(t *testing.T) {
		for i, run := range runs {
			// Read through the new client: the old one's codec was not
			// given B and rightly refuses B's payloads.
			var got string
			if err := starterB.GetWorkflow(ctx, run.GetID(), run.GetRunID()).Get(ctx, &got); err != nil {
				t.Fatalf("workflow %d: %v", i, err)
			}
			want := fmt.Sprintf("before:%s-%d|after:sig-%s-%d", secret, i, secret, i)
			if got != want {
				t.Errorf("workflow %d result = %q, want %q", i, got, want)
			}
		}
	})

	// Split each history at the signal: payloads before it were written
	// under A, the signal and everything after under B.
	var underA, underB []*commonpb.Payload
	for _, run := range runs {
		h := rawHistory(t, raw, run.GetID(), run.GetRunID())
		signalled := false
		for _, e := range h.GetEvents() {
			if e.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED {
				signalled = true
			}
			for _, f := range findPayloads(e, e.GetEventType().String()) {
				if signalled {
					underB = append(underB, f.Payload)
				} else {
					underA = append(underA, f.Payload)
				}
			}
		}
	}

	t.Run("payloads name the key that was current when written", func(t *testing.T) {
		if len(underA) == 0 || len(underB) == 0 {
			t.Fatalf("found %d payloads before the signal and %d after; want some of each", len(underA), len(underB))
		}
		for _, p := range underA {
			if got := keyARNOf(t, p); got != keyA {
				t.Errorf("payload written before rotation names %s, want key A %s", got, keyA)
			}
		}
		for _, p := range underB {
			if got := keyARNOf(t, p); got != keyB {
				t.Errorf("payload written after rotation names %s, want key B %s", got, keyB)
			}
		}
	})

	t.Run("old payloads still decode with A in the allow-list", func(t *testing.T) {
		fresh := newCodec(t, k, rotated)
		if _, err := fresh.Decode(append(append([]*commonpb.Payload{}, underA...), underB...)); err != nil {
			t.Fatalf("decode: %v", err)
		}
	})

	t.Run("codec without A refuses A's payloads without calling KMS", func(t *testing.T) {
		bOnly := newCodec(t, k, codec.Options{KeyID: alias})
		// Warm up on a B payload so the alias is resolved and B's data
		// key is cached: any Decrypt after this would be for A.
		if _, err := bOnly.Decode(underB[:1]); err != nil {
			t.Fatalf("decode a B payload: %v", err)
		}
		before := k.CallCounts()
		for i, p := range underA {
			_, err := bOnly.Decode([]*commonpb.Payload{p})
			if !errors.Is(err, codec.ErrKeyNotAllowed) {
				t.Errorf("payload %d under A: err = %v, want ErrKeyNotAllowed", i, err)
			}
		}
		after := k.CallCounts()
		if d := after[harness.OpDecrypt] - before[harness.OpDecrypt]; d != 0 {
			t.Errorf("%d Decrypt calls for payloads under a key not allowed, want 0", d)
		}
		t.Logf("KMS calls at the emulator: %s", k)
	})
}
