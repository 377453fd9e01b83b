package integration

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// NamespaceWorkflow passes its input through an activity.
func NamespaceWorkflow(ctx workflow.Context, in string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 100 * time.Millisecond},
	})
	var out string
	err := workflow.ExecuteActivity(ctx, NamespaceEcho, in).Get(ctx, &out)
	return out, err
}

// NamespaceEcho is the namespace workflow's activity.
func NamespaceEcho(_ context.Context, in string) (string, error) { return "echo:" + in, nil }

// TestNamespaceBinding checks that data keys are bound to the namespace
// the payload was written in, through the KMS encryption context: KMS
// itself refuses to unwrap a data key under another namespace, so a key
// policy or grant conditioned on the namespace holds, and CloudTrail shows
// which namespace each Decrypt was for.
func TestNamespaceBinding(t *testing.T) {
	k := harness.StartKMS(t)
	keyARN := k.MustCreateKey(t, "namespace")
	ctx := testContext(t, 2*time.Minute)

	// The codec is given no Namespace: it must learn it from the SDK's
	// serialization context on every path.
	opts := codec.Options{KeyID: keyARN, EncryptionContext: map[string]string{"app": "kmscodec-it"}}
	taskQueue := uniqueName("namespace")
	startWorker(t, dialCodec(t, namespace1, newCodec(t, k, opts)), taskQueue, worker.Options{}, func(r worker.Registry) {
		r.RegisterWorkflow(NamespaceWorkflow)
		r.RegisterActivity(NamespaceEcho)
	})
	starter := dialCodec(t, namespace1, newCodec(t, k, opts))
	run, err := starter.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: uniqueName("namespace"), TaskQueue: taskQueue, Memo: map[string]any{"m": "memo"},
	}, NamespaceWorkflow, "in")
	if err != nil {
		t.Fatalf("start workflow in %s: %v", namespace1, err)
	}
	var out string
	if err := run.Get(ctx, &out); err != nil || out != "echo:in" {
		t.Fatalf("workflow in %s: result %q, err %v", namespace1, out, err)
	}
	found := historyPayloads(rawHistory(t, dialRaw(t, namespace1), run.GetID(), run.GetRunID()))
	requireAllEncrypted(t, found)

	t.Run("every payload's encryption context names ns1", func(t *testing.T) {
		for _, f := range found {
			ec := contextOf(t, f.Payload)
			if ec[codec.NamespaceContextKey] != namespace1 {
				t.Errorf("%s %s: %s = %q, want %q", f.Source, f.Path, codec.NamespaceContextKey, ec[codec.NamespaceContextKey], namespace1)
			}
			if ec["app"] != "kmscodec-it" {
				t.Errorf("%s %s: configured encryption context entry missing", f.Source, f.Path)
			}
		}
	})

	// Unwrap the data keys with KMS directly, as anyone holding the
	// payload and kms:Decrypt would.
	decrypt := func(p *commonpb.Payload, ec map[string]string) error {
		env, err := envelope.Parse(p)
		if err != nil {
			return err
		}
		_, err = k.NewClient().Decrypt(ctx, &kms.DecryptInput{
			CiphertextBlob:    env.WrappedKey,
			KeyId:             aws.String(env.KeyARN),
			EncryptionContext: ec,
		})
		return err
	}

	t.Run("KMS unwraps the data key with the recorded context", func(t *testing.T) {
		for _, f := range found {
			if err := decrypt(f.Payload, contextOf(t, f.Payload)); err != nil {
				t.Errorf("%s %s: KMS Decrypt with the recorded context: %v", f.Source, f.Path, err)
			}
		}
	})

	t.Run("KMS refuses the data key under another namespace", func(t *testing.T) {
		before := k.Errors(harness.OpDecrypt)
		p := found[0].Payload
		for name, change := range map[string]func(map[string]string){
			"namespace ns2":      func(ec map[string]string) { ec[codec.NamespaceContextKey] = namespace2 },
			"namespace removed":  func(ec map[string]string) { delete(ec, codec.NamespaceContextKey) },
			"empty context":      func(ec map[string]string) { clear(ec) },
			"extra context pair": func(ec map[string]string) { ec["x"] = "y" },
		} {
			ec := maps.Clone(contextOf(t, p))
			change(ec)
			// Only that it fails matters: the emulator's error code
			// differs from AWS's for the same refusal.
			if err := decrypt(p, ec); err == nil {
				t.Errorf("KMS Decrypt with %s succeeded", name)
			}
		}
		if got := k.Errors(harness.OpDecrypt) - before; got != 4 {
			t.Errorf("emulator refused %d Decrypt calls, want 4", got)
		}
	})

	t.Run("Namespace option binds payloads encoded outside the SDK", func(t *testing.T) {
		c := newCodec(t, k, codec.Options{KeyID: keyARN, Namespace: namespace1})
		out, err := c.Encode([]*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"x"`)}})
		if err != nil {
			t.Fatal(err)
		}
		if got := contextOf(t, out[0])[codec.NamespaceContextKey]; got != namespace1 {
			t.Errorf("%s = %q, want %q", codec.NamespaceContextKey, got, namespace1)
		}
		bound := c.WithSerializationContext(converter.WorkflowSerializationContext{Namespace: namespace2})
		out, err = bound.Encode([]*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"y"`)}})
		if err != nil {
			t.Fatal(err)
		}
		if got := contextOf(t, out[0])[codec.NamespaceContextKey]; got != namespace2 {
			t.Errorf("with the SDK's context for %s: %s = %q", namespace2, codec.NamespaceContextKey, got)
		}
	})
}
