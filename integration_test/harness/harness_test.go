package harness_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// TestKMSCountsCallsAtTheEmulator proves the emulator is reached through the
// real SDK client and that its counters see every request, failed ones too.
func TestKMSCountsCallsAtTheEmulator(t *testing.T) {
	k := harness.StartKMS(t)
	ctx := context.Background()
	arn := k.MustCreateKey(t, "harness self-test")
	k.MustCreateAlias(t, "alias/harness", arn)

	out, err := k.Client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId:             aws.String("alias/harness"),
		KeySpec:           types.DataKeySpecAes256,
		EncryptionContext: map[string]string{"purpose": "self-test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(out.KeyId); got != arn {
		t.Fatalf("GenerateDataKey via alias answered key %q, want %q", got, arn)
	}
	if _, err := k.NewClient().Decrypt(ctx, &kms.DecryptInput{
		CiphertextBlob:    out.CiphertextBlob,
		EncryptionContext: map[string]string{"purpose": "other"},
	}); err == nil {
		t.Fatal("Decrypt with a different encryption context succeeded")
	}
	dec, err := k.NewClient().Decrypt(ctx, &kms.DecryptInput{
		CiphertextBlob:    out.CiphertextBlob,
		EncryptionContext: map[string]string{"purpose": "self-test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(dec.Plaintext) != string(out.Plaintext) {
		t.Fatal("Decrypt did not return the data key")
	}

	for op, want := range map[string]int64{"CreateKey": 1, "CreateAlias": 1, harness.OpGenerateDataKey: 1, harness.OpDecrypt: 2} {
		if got := k.Calls(op); got != want {
			t.Errorf("Calls(%s) = %d, want %d", op, got, want)
		}
	}
	if got := k.Errors(harness.OpDecrypt); got != 1 {
		t.Errorf("Errors(Decrypt) = %d, want 1", got)
	}
}

// TestTemporalDevServer proves the dev server starts on run-time ports with
// the requested namespaces, and with the Web UI configured by extra flags
// (as codec-server tests need).
func TestTemporalDevServer(t *testing.T) {
	const codecEndpoint = "http://127.0.0.1:9/codec"
	s := harness.StartTemporal(t, harness.TemporalOptions{
		Namespaces: []string{"harness-ns"},
		UI:         true,
		ExtraArgs:  []string{"--ui-codec-endpoint", codecEndpoint},
	})
	c := s.MustDial(t, client.Options{Namespace: "harness-ns"})
	if _, err := c.WorkflowService().DescribeNamespace(context.Background(), &workflowservice.DescribeNamespaceRequest{Namespace: "harness-ns"}); err != nil {
		t.Fatal(err)
	}

	if !strings.HasPrefix(s.UIAddress, "http://127.0.0.1:") {
		t.Fatalf("UIAddress = %q, want http://127.0.0.1:PORT", s.UIAddress)
	}
	resp, err := http.Get(s.UIAddress + "/api/v1/settings")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var settings struct{ Codec struct{ Endpoint string } }
	if err := json.NewDecoder(resp.Body).Decode(&settings); err != nil {
		t.Fatalf("UI settings: %v", err)
	}
	if settings.Codec.Endpoint != codecEndpoint {
		t.Errorf("UI codec endpoint = %q, want %q", settings.Codec.Endpoint, codecEndpoint)
	}
}

func TestCodecServerStartsOnLoopback(t *testing.T) {
	srv := harness.StartCodecServer(t, nil, "--insecure-no-auth", "--region", "us-east-1", "--kms-endpoint", "http://127.0.0.1:1", "--key-id", "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-0000-0000-000000000000")
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("URL = %q, want loopback", srv.URL)
	}
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz: %s", resp.Status)
	}
}
