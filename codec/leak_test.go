package codec_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	commonpb "go.temporal.io/api/common/v1"
	"go.uber.org/goleak"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// No test in this package may leave a goroutine running: a Codec starts
// none, needs no Close, and a KMS call that times out ends with it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// hangingKMS answers nothing until the caller's context ends, like a KMS
// endpoint that accepted the connection and went silent.
type hangingKMS struct{}

func (hangingKMS) GenerateDataKey(ctx context.Context, _ *awskms.GenerateDataKeyInput, _ ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (hangingKMS) Decrypt(ctx context.Context, _ *awskms.DecryptInput, _ ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (hangingKMS) DescribeKey(ctx context.Context, _ *awskms.DescribeKeyInput, _ ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// Codecs used concurrently through every entry point (namespace views,
// the data and failure converters, compression, an alias to resolve) and
// then dropped leave no goroutine behind, nor do callers that gave up on
// a silent KMS at KMSTimeout.
func TestNoGoroutineOutlivesACodec(t *testing.T) {
	defer goleak.VerifyNone(t)
	fake := kmstest.New()
	arn := fake.CreateKey()
	fake.SetAlias("alias/temporal", arn)

	for _, keyID := range []string{arn, "alias/temporal"} {
		c := newCodec(t, codec.Options{KMS: fake, KeyID: keyID, MaxPayloadsPerDataKey: 3, DecryptCacheSize: 2})
		dc := codec.NewDataConverter(c, codec.DataConverterOptions{Compress: true})
		fc := codec.NewFailureConverter(dc)
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				enc, err := c.WithNamespace(fmt.Sprint("ns", g%3)).Encode(payloads(5))
				if err == nil {
					_, err = c.Decode(enc)
				}
				if err == nil {
					var p *commonpb.Payload
					if p, err = dc.ToPayload("value"); err == nil {
						var s string
						err = dc.FromPayload(p, &s)
					}
				}
				if err == nil && fc.FailureToError(fc.ErrorToFailure(errors.New("boom"))) == nil {
					err = errors.New("failure converter lost the error")
				}
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}

	enc := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: arn}), payload("x"))
	silent := newCodec(t, codec.Options{KMS: hangingKMS{}, KeyID: "alias/temporal", KMSTimeout: 20 * time.Millisecond, DecryptKeyIDs: []string{arn}})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := silent.Encode(payloads(1)); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Encode against a silent KMS: got %v, want the timeout", err)
			}
			if _, err := silent.Decode(enc); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Decode against a silent KMS: got %v, want the timeout", err)
			}
		})
	}
	wg.Wait()
}
