package integration

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/proto"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// samplesStyleCodec is a codec built the way Temporal's encryption
// samples build theirs, for the workers the migration starts from: each
// payload is marshalled and sealed with AES-256-GCM under one static key
// (a random 12-byte nonce in front, no additional data), marked
// binary/encrypted and named by encryption-key-id, with no
// encryption-format. It opens its own payloads and passes others through.
type samplesStyleCodec struct {
	keyID string
	key   []byte
	aead  cipher.AEAD
}

func newSamplesStyleCodec(t testing.TB, keyID string) *samplesStyleCodec {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return &samplesStyleCodec{keyID: keyID, key: key, aead: aead}
}

func (s *samplesStyleCodec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plaintext, err := proto.Marshal(p)
		if err != nil {
			return nil, err
		}
		nonce := make([]byte, 12)
		if _, err := rand.Read(nonce); err != nil {
			return nil, err
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{"encoding": []byte("binary/encrypted"), "encryption-key-id": []byte(s.keyID)},
			Data:     s.aead.Seal(nonce, nonce, plaintext, nil),
		}
	}
	return out, nil
}

func (s *samplesStyleCodec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()["encoding"]) != "binary/encrypted" {
			out[i] = p
			continue
		}
		if id := string(p.Metadata["encryption-key-id"]); id != s.keyID {
			return nil, fmt.Errorf("samples-style codec: unknown key %q", id)
		}
		if len(p.Data) < 12 {
			return nil, errors.New("samples-style codec: payload too short")
		}
		plaintext, err := s.aead.Open(nil, p.Data[:12], p.Data[12:], nil)
		if err != nil {
			return nil, err
		}
		out[i] = &commonpb.Payload{}
		if err := proto.Unmarshal(plaintext, out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// isSamplesLayout reports whether p was written by a samples-style codec
// under keyID.
func isSamplesLayout(p *commonpb.Payload, keyID string) bool {
	md := p.GetMetadata()
	_, hasFormat := md[envelope.MetadataFormat]
	return string(md[envelope.MetadataEncoding]) == envelope.EncodingEncrypted && !hasFormat && string(md[envelope.MetadataKeyID]) == keyID
}

// TestMigrationFromTheEncryptionSamples moves a task queue from workers
// with the samples' static-key codec to kmscodec workers while workflows
// are in flight: half-run workflows written under the static key finish
// on kmscodec workers that decode the old payloads with the legacy
// decoder; everything written after the switch is kms-envelope-v1; a
// reader without the static key fails on the old payloads only, with a
// typed error.
func TestMigrationFromTheEncryptionSamples(t *testing.T) {
	const workflows = 20
	k := harness.StartKMS(t)
	keyARN := k.MustCreateKey(t, "migration")
	taskQueue := uniqueName("migration")
	secret := uniqueName("kmscodec-secret")
	ctx := testContext(t, 4*time.Minute)
	raw := dialRaw(t, "default")

	// Phase 1: the samples' codec, its static key named "static-key-1".
	old := newSamplesStyleCodec(t, "static-key-1")
	oldOptions := client.Options{
		Namespace:     "default",
		DataConverter: converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), old),
	}
	oldWorker := startWorker(t, server.MustDial(t, oldOptions), taskQueue, worker.Options{}, registerTwoStep)
	oldClient := server.MustDial(t, oldOptions)
	runs := startTwoStepWorkflows(t, ctx, oldClient, raw, taskQueue, "migration", secret, workflows)
	oldWorker.Stop()

	// Phase 2: kmscodec workers and clients, the static key as their
	// legacy decoder only.
	legacy, err := codec.NewLegacyStaticKeyDecoder(map[string][]byte{old.keyID: old.key})
	if err != nil {
		t.Fatal(err)
	}
	migrated := codec.Options{KeyID: keyARN, Legacy: legacy}
	startWorker(t, dialCodec(t, "default", newCodec(t, k, migrated)), taskQueue, worker.Options{}, registerTwoStep)
	newClient := dialCodec(t, "default", newCodec(t, k, migrated))
	signalTwoStepWorkflows(t, ctx, newClient, runs, secret)

	t.Run("every workflow completes on the kmscodec workers", func(t *testing.T) {
		for i, run := range runs {
			var got string
			if err := newClient.GetWorkflow(ctx, run.GetID(), run.GetRunID()).Get(ctx, &got); err != nil {
				t.Fatalf("workflow %d: %v", i, err)
			}
			if want := fmt.Sprintf("before:%s-%d|after:sig-%s-%d", secret, i, secret, i); got != want {
				t.Errorf("workflow %d result = %q, want %q", i, got, want)
			}
		}
	})

	before, after := splitAtSignal(t, raw, runs)
	t.Logf("%d workflows; %d payloads before the switch, %d after", workflows, len(before), len(after))

	t.Run("payloads before the switch are the samples' and after it kms-envelope-v1", func(t *testing.T) {
		if len(before) < 3*workflows || len(after) < 4*workflows {
			t.Fatalf("%d payloads before the switch and %d after; want at least %d and %d", len(before), len(after), 3*workflows, 4*workflows)
		}
		for _, f := range before {
			if !isSamplesLayout(f.Payload, old.keyID) {
				t.Errorf("payload before the switch at %s %s is not in the samples' layout", f.Source, f.Path)
			}
		}
		requireAllEncrypted(t, after)
		for _, f := range after {
			if got := keyARNOf(t, f.Payload); got != keyARN {
				t.Errorf("payload after the switch at %s names %s, want %s", f.Path, got, keyARN)
			}
		}
	})

	t.Run("new payloads need no static key", func(t *testing.T) {
		kmsOnly := newCodec(t, k, codec.Options{KeyID: keyARN, RejectUnencrypted: true})
		for _, f := range after {
			out, err := kmsOnly.Decode([]*commonpb.Payload{f.Payload})
			if err != nil {
				t.Errorf("%s %s: %v", f.Source, f.Path, err)
				continue
			}
			// Nothing is sealed under the static key inside the envelope.
			if enc := string(out[0].Metadata["encoding"]); enc == "binary/encrypted" {
				t.Errorf("%s %s decodes to a payload still encrypted (%q): the static key sealed it too", f.Source, f.Path, out[0].Metadata)
			}
		}
	})

	t.Run("a reader without the static key fails on the old payloads only, with a typed error", func(t *testing.T) {
		otherLegacy, err := codec.NewLegacyStaticKeyDecoder(map[string][]byte{"static-key-2": make([]byte, 32)})
		if err != nil {
			t.Fatal(err)
		}
		readers := []struct {
			name string
			opts codec.Options
			want error
		}{
			{"another static key", codec.Options{KeyID: keyARN, Legacy: otherLegacy}, codec.ErrLegacyKeyUnknown},
			{"no legacy decoder, RejectUnencrypted", codec.Options{KeyID: keyARN, RejectUnencrypted: true}, codec.ErrUnencryptedPayload},
		}
		for _, r := range readers {
			reader := newCodec(t, k, r.opts)
			for _, f := range before {
				if _, err := reader.Decode([]*commonpb.Payload{f.Payload}); !errors.Is(err, r.want) {
					t.Errorf("%s, old payload at %s: err = %v, want %v", r.name, f.Path, err, r.want)
				}
			}
			for _, f := range after {
				if _, err := reader.Decode([]*commonpb.Payload{f.Payload}); err != nil {
					t.Errorf("%s, new payload at %s: %v", r.name, f.Path, err)
				}
			}
		}
	})
}

// splitAtSignal returns the payloads of the runs' raw histories written
// before the signal (by the samples-style workers) and from the signal on
// (by kmscodec).
func splitAtSignal(t *testing.T, raw client.Client, runs []client.WorkflowRun) (before, after []foundPayload) {
	t.Helper()
	for _, run := range runs {
		signalled := false
		for _, e := range rawHistory(t, raw, run.GetID(), run.GetRunID()).GetEvents() {
			if e.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED {
				signalled = true
			}
			found := findPayloads(e, e.GetEventType().String())
			if signalled {
				after = append(after, found...)
			} else {
				before = append(before, found...)
			}
		}
	}
	return before, after
}
