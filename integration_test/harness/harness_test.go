package harness_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/temporal-kms/kmscodec/codec"
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

// TestFaultProxy checks each fault the proxy injects as the real SDK
// client sees it, and that rules are bounded by operation, count and
// time.
func TestFaultProxy(t *testing.T) {
	k := harness.StartKMS(t)
	arn := k.MustCreateKey(t, "fault proxy self-test")
	p := harness.StartFaultProxy(t, k.URL)
	p.SlowDelay = time.Minute
	// One attempt per call: every injected fault reaches the caller.
	client := harness.NewKMSClient(p.URL, harness.FewRetries(1, 0))
	generate := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256})
		return err
	}
	waitDone := func(done <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the rule did not end", what)
		}
	}
	if err := generate(10 * time.Second); err != nil {
		t.Fatalf("through the proxy without a fault: %v", err)
	}

	for _, tt := range []struct {
		fault  harness.Fault
		code   string // AWS error code, for faults that answer
		status int
	}{
		{harness.Throttle, "ThrottlingException", 400},
		{harness.InternalError, "KMSInternalException", 500},
		{harness.Unavailable, "ServiceUnavailable", 503},
		{harness.Slow, "", 0},
		{harness.Drop, "", 0},
	} {
		t.Run(tt.fault.String(), func(t *testing.T) {
			done := p.Inject(harness.FaultRule{Fault: tt.fault, Count: 1, For: time.Minute})
			start := time.Now()
			err := generate(300 * time.Millisecond)
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("the call succeeded")
			}
			var apiErr smithy.APIError
			var respErr *awshttp.ResponseError
			switch {
			case tt.code != "":
				if !errors.As(err, &apiErr) || apiErr.ErrorCode() != tt.code {
					t.Fatalf("error %v, want AWS error code %s", err, tt.code)
				}
				if !errors.As(err, &respErr) || respErr.HTTPStatusCode() != tt.status {
					t.Fatalf("error %v, want HTTP status %d", err, tt.status)
				}
			case tt.fault == harness.Slow:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("error %v, want the caller's deadline", err)
				}
			default:
				if errors.As(err, &apiErr) {
					t.Fatalf("error %v, want a connection error without an answer", err)
				}
			}
			if elapsed > 5*time.Second {
				t.Fatalf("the failed call took %v", elapsed)
			}
			// The codec must see each of them as worth retrying.
			if kmsErr := (&codec.KMSError{Op: "GenerateDataKey", Err: err}); !kmsErr.Transient() {
				t.Fatalf("%v is not transient to the codec", err)
			}
			waitDone(done, "Count 1")
			if err := generate(10 * time.Second); err != nil {
				t.Fatalf("after the fault: %v", err)
			}
			if got := p.Injected(tt.fault); got != 1 {
				t.Fatalf("Injected(%v) = %d, want 1", tt.fault, got)
			}
		})
	}
	// The held request ends when its client gives up, not after SlowDelay.
	deadline := time.Now().Add(10 * time.Second)
	for p.Abandoned() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("Abandoned() = %d, want 1", p.Abandoned())
		}
		time.Sleep(10 * time.Millisecond)
	}

	t.Run("only the operations named", func(t *testing.T) {
		done := p.Inject(harness.FaultRule{Fault: harness.Throttle, Ops: []string{harness.OpDecrypt}, For: time.Minute})
		if err := generate(10 * time.Second); err != nil {
			t.Fatalf("GenerateDataKey with Decrypt throttled: %v", err)
		}
		_, err := client.Decrypt(context.Background(), &kms.DecryptInput{KeyId: aws.String(arn), CiphertextBlob: []byte("x")})
		var apiErr smithy.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ThrottlingException" {
			t.Fatalf("Decrypt: %v, want ThrottlingException", err)
		}
		p.Clear()
		waitDone(done, "Clear")
	})

	t.Run("bounded by count", func(t *testing.T) {
		done := p.Inject(harness.FaultRule{Fault: harness.Unavailable, Count: 2, For: time.Minute})
		for i := 0; i < 2; i++ {
			if err := generate(10 * time.Second); err == nil {
				t.Fatalf("call %d succeeded", i+1)
			}
		}
		waitDone(done, "Count 2")
		if err := generate(10 * time.Second); err != nil {
			t.Fatalf("call 3: %v", err)
		}
	})

	t.Run("bounded by time", func(t *testing.T) {
		done := p.Inject(harness.FaultRule{Fault: harness.InternalError, For: 200 * time.Millisecond})
		if err := generate(10 * time.Second); err == nil {
			t.Fatal("the call during the window succeeded")
		}
		waitDone(done, "For 200ms")
		if err := generate(10 * time.Second); err != nil {
			t.Fatalf("after the window: %v", err)
		}
	})
	t.Logf("proxy: %s; emulator: %s", p, k)
}
