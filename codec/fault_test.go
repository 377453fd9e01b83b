package codec_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	"github.com/golang/mock/gomock"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
	"github.com/temporal-kms/kmscodec/mocks"
)

// kmsFault is a way for a KMS call to fail. hang makes the call wait for
// its context to end, past KMSTimeout, as a silent endpoint would.
type kmsFault struct {
	name string
	err  error
	hang bool
}

// sdkError wraps err as the AWS SDK does for an operation that failed.
func sdkError(op string, err error) error {
	return &smithy.OperationError{ServiceID: "KMS", OperationName: op, Err: err}
}

func transientFaults(op string) []kmsFault {
	return []kmsFault{
		{name: "throttled", err: sdkError(op, &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded", Fault: smithy.FaultClient})},
		{name: "5xx from KMS", err: sdkError(op, &smithy.GenericAPIError{Code: "InternalFailure", Message: "internal error", Fault: smithy.FaultServer})},
		{name: "KMSInternalException", err: sdkError(op, &types.KMSInternalException{Message: aws.String("internal")})},
		{name: "connection reset", err: sdkError(op, errors.New("read tcp 127.0.0.1:443: connection reset by peer"))},
		{name: "no answer within KMSTimeout", err: context.DeadlineExceeded, hang: true},
	}
}

// fail returns the fault's error, waiting first for ctx to end if the
// fault is a hang.
func (f kmsFault) fail(ctx context.Context) error {
	if f.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return f.err
}

// checkTaskFailure checks that err is what Encode or Decode must return
// for a failed KMS call: a workflow task failure (so Temporal retries the
// task) wrapping a transient *codec.KMSError that wraps the cause.
func checkTaskFailure(t *testing.T, err error, cause error, op string) {
	t.Helper()
	var retryable *converter.WorkflowTaskFailureError
	var kmsErr *codec.KMSError
	switch {
	case !errors.As(err, &retryable):
		t.Fatalf("got %v, want a converter.WorkflowTaskFailureError", err)
	case !errors.As(err, &kmsErr):
		t.Fatalf("got %v, want a *codec.KMSError", err)
	case kmsErr.Op != op:
		t.Fatalf("KMSError.Op %q, want %q", kmsErr.Op, op)
	case !kmsErr.Transient():
		t.Fatalf("%v is not transient", err)
	case !errors.Is(err, cause):
		t.Fatalf("got %v, want it to wrap %v", err, cause)
	}
}

// While KMS fails GenerateDataKey, Encode returns no payload at all, and
// an error that fails the workflow task; once KMS recovers, the next
// Encode costs exactly one GenerateDataKey: no failure was cached.
func TestEncodeDuringAKMSFaultReturnsNothingAndRecoversWithOneCall(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	for _, fault := range transientFaults("GenerateDataKey") {
		t.Run(fault.name, func(t *testing.T) {
			m := mocks.NewMockAPI(gomock.NewController(t))
			var calls atomic.Int32
			var faulty atomic.Bool
			faulty.Store(true)
			m.EXPECT().GenerateDataKey(gomock.Any(), gomock.Any()).DoAndReturn(
				func(ctx context.Context, in *awskms.GenerateDataKeyInput, opts ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
					calls.Add(1)
					if faulty.Load() {
						return nil, fault.fail(ctx)
					}
					return fake.GenerateDataKey(ctx, in, opts...)
				}).AnyTimes()
			c := newCodec(t, codec.Options{KMS: m, KeyID: arn, KMSTimeout: 20 * time.Millisecond})
			in := payloads(3)

			for range 3 {
				out, err := c.Encode(in)
				if out != nil {
					t.Fatalf("Encode returned %d payloads during a KMS fault", len(out))
				}
				checkTaskFailure(t, err, fault.err, "GenerateDataKey")
			}
			faulty.Store(false)
			before := calls.Load()
			out := encode(t, c, in...)
			if n := calls.Load() - before; n != 1 {
				t.Fatalf("%d GenerateDataKey calls after KMS recovered, want 1", n)
			}
			for _, p := range out {
				if _, err := envelope.Parse(p); err != nil {
					t.Fatalf("Encode returned a payload that is not kms-envelope-v1: %v", err)
				}
			}
			if back := mustDecode(t, c, out); !equal(back, in) {
				t.Fatal("round trip after recovery changed the payloads")
			}
		})
	}
}

// While KMS fails Decrypt, Decode returns no payload and an error that
// fails the workflow task; transient faults are not remembered, so once
// KMS recovers the next Decode costs exactly one Decrypt.
func TestDecodeDuringAKMSFaultReturnsNothingAndRecoversWithOneCall(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	in := payloads(3)
	enc := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: arn}), in...)
	for _, fault := range transientFaults("Decrypt") {
		t.Run(fault.name, func(t *testing.T) {
			m := mocks.NewMockAPI(gomock.NewController(t))
			var calls atomic.Int32
			var faulty atomic.Bool
			faulty.Store(true)
			m.EXPECT().Decrypt(gomock.Any(), gomock.Any()).DoAndReturn(
				func(ctx context.Context, in *awskms.DecryptInput, opts ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
					calls.Add(1)
					if faulty.Load() {
						return nil, fault.fail(ctx)
					}
					return fake.Decrypt(ctx, in, opts...)
				}).AnyTimes()
			c := newCodec(t, codec.Options{KMS: m, KeyID: arn, KMSTimeout: 20 * time.Millisecond})

			for i := range 3 {
				out, err := c.Decode(enc)
				if out != nil {
					t.Fatalf("Decode returned %d payloads during a KMS fault", len(out))
				}
				checkTaskFailure(t, err, fault.err, "Decrypt")
				if n := calls.Load(); n != int32(i+1) {
					t.Fatalf("%d Decrypt calls after %d failed Decodes: a transient fault was remembered", n, i+1)
				}
			}
			faulty.Store(false)
			before := calls.Load()
			if out := mustDecode(t, c, enc); !equal(out, in) {
				t.Fatal("Decode after recovery changed the payloads")
			}
			if n := calls.Load() - before; n != 1 {
				t.Fatalf("%d Decrypt calls after KMS recovered, want 1", n)
			}
		})
	}
}

// A batch whose payloads need several data keys fails as a whole when
// KMS fails for one of them in the middle: no partial batch, no payload
// left unencrypted. After recovery the data keys KMS did give are used,
// and the failed one is asked for again exactly once.
func TestAKMSFaultInTheMiddleOfABatchFailsTheWholeBatch(t *testing.T) {
	throttled := sdkError("op", &smithy.GenericAPIError{Code: "ThrottlingException", Fault: smithy.FaultClient})

	t.Run("Encode", func(t *testing.T) {
		fake := kmstest.New()
		arn := fake.CreateKey()
		m := mocks.NewMockAPI(gomock.NewController(t))
		var calls atomic.Int32
		m.EXPECT().GenerateDataKey(gomock.Any(), gomock.Any()).DoAndReturn(
			func(ctx context.Context, in *awskms.GenerateDataKeyInput, opts ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
				if calls.Add(1) == 2 { // the second data key of the batch
					return nil, throttled
				}
				return fake.GenerateDataKey(ctx, in, opts...)
			}).AnyTimes()
		c := newCodec(t, codec.Options{KMS: m, KeyID: arn, MaxPayloadsPerDataKey: 2})
		in := payloads(5)
		out, err := c.Encode(in)
		if out != nil {
			t.Fatalf("Encode returned %d payloads after a fault mid-batch", len(out))
		}
		checkTaskFailure(t, err, throttled, "GenerateDataKey")
		if !errorNamesPayload(err, 3, 5) {
			t.Errorf("error does not name the payload at fault: %v", err)
		}

		// The first data key sealed two payloads and is spent; five more
		// payloads need three new ones, and nothing else.
		out = encode(t, c, in...)
		if n := calls.Load(); n != 2+3 {
			t.Fatalf("%d GenerateDataKey calls in all, want 2 for the failed batch and 3 for the retry", n)
		}
		if back := mustDecode(t, c, out); !equal(back, in) {
			t.Fatal("round trip after recovery changed the payloads")
		}
	})

	t.Run("Decode", func(t *testing.T) {
		fake := kmstest.New()
		arn := fake.CreateKey()
		in := payloads(3)
		enc := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: arn, MaxPayloadsPerDataKey: 1}), in...) // three data keys
		m := mocks.NewMockAPI(gomock.NewController(t))
		var calls atomic.Int32
		m.EXPECT().Decrypt(gomock.Any(), gomock.Any()).DoAndReturn(
			func(ctx context.Context, in *awskms.DecryptInput, opts ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
				if calls.Add(1) == 2 { // the second payload's data key
					return nil, throttled
				}
				return fake.Decrypt(ctx, in, opts...)
			}).AnyTimes()
		c := newCodec(t, codec.Options{KMS: m, KeyID: arn})
		out, err := c.Decode(enc)
		if out != nil {
			t.Fatalf("Decode returned %d payloads after a fault mid-batch", len(out))
		}
		checkTaskFailure(t, err, throttled, "Decrypt")
		if !errorNamesPayload(err, 2, 3) {
			t.Errorf("error does not name the payload at fault: %v", err)
		}
		// The first data key is cached; the second and third are asked for once each.
		if out := mustDecode(t, c, enc); !equal(out, in) {
			t.Fatal("Decode after recovery changed the payloads")
		}
		if n := calls.Load(); n != 2+2 {
			t.Fatalf("%d Decrypt calls in all, want 2 for the failed batch and 2 for the retry", n)
		}
	})
}

func errorNamesPayload(err error, i, n int) bool {
	return err != nil && strings.Contains(err.Error(), fmt.Sprintf("payload %d of %d", i, n))
}

// KMS answers that are unusable fail like KMS errors: the codec never
// seals under a data key KMS did not properly give it.
func TestUnusableKMSAnswersFailEncodeWithoutAPayload(t *testing.T) {
	arn := "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000001"
	tests := []struct {
		name string
		out  *awskms.GenerateDataKeyOutput
	}{
		{"16-byte data key", &awskms.GenerateDataKeyOutput{KeyId: aws.String(arn), Plaintext: make([]byte, 16), CiphertextBlob: []byte("w")}},
		{"no wrapped key", &awskms.GenerateDataKeyOutput{KeyId: aws.String(arn), Plaintext: make([]byte, 32)}},
		{"an alias for the key ARN", &awskms.GenerateDataKeyOutput{KeyId: aws.String("alias/temporal"), Plaintext: make([]byte, 32), CiphertextBlob: []byte("w")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mocks.NewMockAPI(gomock.NewController(t))
			m.EXPECT().GenerateDataKey(gomock.Any(), gomock.Any()).Return(tt.out, nil)
			out, err := newCodec(t, codec.Options{KMS: m, KeyID: arn}).Encode(payloads(1))
			var retryable *converter.WorkflowTaskFailureError
			var kmsErr *codec.KMSError
			if out != nil || !errors.As(err, &retryable) || !errors.As(err, &kmsErr) {
				t.Fatalf("got %d payloads and %v, want none and a retryable KMSError", len(out), err)
			}
		})
	}
}

// bogusPayload is a well-formed payload under key arn whose wrapped data
// key KMS never produced.
func bogusPayload(t *testing.T, fake *kmstest.KMS, arn string) *commonpb.Payload {
	t.Helper()
	p := proto.Clone(encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: arn, Namespace: "ns"}), payload("x"))[0]).(*commonpb.Payload)
	p.Metadata[envelope.MetadataDataKey] = bytes.Repeat([]byte{0xbb}, 184)
	return p
}

// Someone who can write to a history can fill it with payloads that name
// an allowed key but carry a wrapped key KMS will refuse. Ten thousand
// such payloads, read one by one over thirty seconds, cost one Decrypt
// per ten-second negative-cache interval: three, not ten thousand.
func TestAFloodOfPayloadsWithOneBogusWrappedKeyCostsOneDecryptPerNegativeInterval(t *testing.T) {
	const (
		flood    = 10_000
		step     = 3 * time.Millisecond // 10,000 payloads over 30 seconds
		interval = 10 * time.Second     // the decryption cache's default negative TTL
	)
	fake := kmstest.New()
	arn := fake.CreateKey()
	bogus := bogusPayload(t, fake, arn)
	kms := &kmstest.Counter{API: fake}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var now atomic.Int64
	c := newCodec(t, codec.Options{KMS: kms, KeyID: arn, Clock: func() time.Time { return start.Add(time.Duration(now.Load())) }})

	for i := range flood {
		now.Store(int64(time.Duration(i) * step))
		out, err := c.Decode([]*commonpb.Payload{bogus})
		var invalid *types.InvalidCiphertextException
		if out != nil || !errors.As(err, &invalid) {
			t.Fatalf("payload %d: got %v, want KMS's InvalidCiphertextException", i, err)
		}
	}
	// Decrypt at 0 s, then at the first payload at or after 10 s and 20 s.
	want := int64((flood*step + interval - 1) / interval)
	if n := kms.DecryptCalls.Load(); n != want {
		t.Fatalf("%d Decrypt calls for %d payloads with one bogus wrapped key, want %d", n, flood, want)
	}
	if s := c.Stats(); s.NegativeCacheHits != uint64(flood-want) || s.ErrorsKMS != flood {
		t.Fatalf("stats %+v", s)
	}
	t.Logf("%d payloads with one bogus wrapped key over %v: %d Decrypt calls", flood, flood*step, kms.DecryptCalls.Load())
}

// The same flood, read all at once by 64 goroutines, costs one Decrypt:
// concurrent readers share the call and then the remembered refusal.
func TestAConcurrentFloodOfPayloadsWithOneBogusWrappedKeyCostsOneDecrypt(t *testing.T) {
	const goroutines, each = 64, 157 // 10,048 payloads
	fake := kmstest.New()
	arn := fake.CreateKey()
	bogus := bogusPayload(t, fake, arn)
	kms := &kmstest.Counter{API: fake}
	c := newCodec(t, codec.Options{KMS: kms, KeyID: arn})
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				if _, err := c.Decode([]*commonpb.Payload{bogus}); !errors.As(err, new(*types.InvalidCiphertextException)) {
					t.Errorf("got %v, want KMS's InvalidCiphertextException", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := kms.DecryptCalls.Load(); n != 1 {
		t.Fatalf("%d Decrypt calls for %d payloads with one bogus wrapped key, want 1", n, goroutines*each)
	}
}

// A KMS refusal (here: access denied, until an operator fixes the key
// policy) is remembered for the negative interval only; the first read
// after it asks KMS again and succeeds.
func TestARefusalIsRetriedAfterTheNegativeInterval(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	in := payloads(1)
	enc := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: arn}), in...)
	denied := sdkError("Decrypt", &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not authorized", Fault: smithy.FaultClient})
	var allowed atomic.Bool
	var calls atomic.Int32
	m := mocks.NewMockAPI(gomock.NewController(t))
	m.EXPECT().Decrypt(gomock.Any(), gomock.Any()).DoAndReturn(
		func(ctx context.Context, in *awskms.DecryptInput, opts ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
			calls.Add(1)
			if !allowed.Load() {
				return nil, denied
			}
			return fake.Decrypt(ctx, in, opts...)
		}).AnyTimes()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var now atomic.Int64
	c := newCodec(t, codec.Options{KMS: m, KeyID: arn, Clock: func() time.Time { return start.Add(time.Duration(now.Load())) }})

	for range 5 {
		if _, err := c.Decode(enc); !errors.Is(err, denied) || !errors.As(err, new(*converter.WorkflowTaskFailureError)) {
			t.Fatalf("got %v, want the retryable refusal", err)
		}
	}
	allowed.Store(true)
	now.Store(int64(9 * time.Second))
	if _, err := c.Decode(enc); !errors.Is(err, denied) {
		t.Fatalf("within the interval: got %v, want the remembered refusal", err)
	}
	now.Store(int64(10 * time.Second))
	if out := mustDecode(t, c, enc); !equal(out, in) {
		t.Fatal("Decode after the interval changed the payloads")
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d Decrypt calls, want 2: the refusal and the retry after the interval", n)
	}
}
