package codec_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// Sixty-four goroutines share one Codec for two seconds, as the workflow
// and activity pollers of a busy worker do: each encodes batches in one of
// five namespaces, reads them back together with a payload that was
// never encrypted, and hands them to a second codec, a cold reader with a
// cache too small to hold its keys. Under the race detector there is no
// race and no error; every payload comes back as it went in; and every
// counter adds up, both against what the goroutines did and against the
// calls KMS saw.
func TestSixtyFourGoroutinesShareOneCodecForTwoSeconds(t *testing.T) {
	const (
		goroutines     = 64
		namespaces     = 5
		perDataKey     = 50
		runFor         = 2 * time.Second
		readerKeyCache = 4
	)
	fake := kmstest.New()
	arn := fake.CreateKey()
	writerKMS := &kmstest.Counter{API: fake}
	writer := newCodec(t, codec.Options{KMS: writerKMS, KeyID: arn, MaxPayloadsPerDataKey: perDataKey})
	readerKMS := &kmstest.Counter{API: fake}
	reader := newCodec(t, codec.Options{KMS: readerKMS, KeyID: arn, DecryptCacheSize: readerKeyCache})

	type batch struct{ in, enc []*commonpb.Payload }
	handoff := make(chan batch, goroutines)
	var (
		encoded, encodedBytes atomic.Uint64
		writerDecoded, plain  atomic.Uint64
		readerDecoded         atomic.Uint64
		encodedPerNamespace   [namespaces]atomic.Uint64
		deadline              = time.Now().Add(runFor)
		wg                    sync.WaitGroup
		neverEncrypted        = payload("written before encryption was turned on")
		errorOnce             sync.Once
		reportError           = func(format string, args ...any) { errorOnce.Do(func() { t.Errorf(format, args...) }) }
	)
	for g := range goroutines {
		wg.Go(func() {
			ns := g % namespaces
			view := writer.WithSerializationContext(converter.WorkflowSerializationContext{Namespace: fmt.Sprint("ns-", ns), WorkflowID: fmt.Sprint("wf-", g)})
			for i := 0; time.Now().Before(deadline); i++ {
				in := make([]*commonpb.Payload, 1+i%4)
				for j := range in {
					in[j] = payload(fmt.Sprintf("goroutine %d batch %d payload %d", g, i, j))
				}
				enc, err := view.Encode(in)
				if err != nil {
					reportError("Encode: %v", err)
					return
				}
				for _, p := range enc {
					if string(p.Metadata[envelope.MetadataFormat]) != envelope.Format {
						reportError("Encode returned a payload that is not kms-envelope-v1")
						return
					}
				}
				encoded.Add(uint64(len(in)))
				encodedPerNamespace[ns].Add(uint64(len(in)))
				for _, p := range in {
					encodedBytes.Add(uint64(len(p.Data)))
				}

				out, err := writer.Decode(append(enc[:len(enc):len(enc)], neverEncrypted))
				if err != nil || !equal(out, append(in[:len(in):len(in)], neverEncrypted)) {
					reportError("the writer's Decode did not return its input: %v", err)
					return
				}
				writerDecoded.Add(uint64(len(enc)))
				plain.Add(1)

				// Hand the batch to whoever comes next, and read one handed over.
				select {
				case handoff <- batch{in, enc}:
				default:
				}
				select {
				case b := <-handoff:
					out, err := reader.Decode(b.enc)
					if err != nil || !equal(out, b.in) {
						reportError("the reader's Decode did not return the batch: %v", err)
						return
					}
					readerDecoded.Add(uint64(len(b.enc)))
				default:
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	w, r := writer.Stats(), reader.Stats()
	t.Logf("%d payloads encoded, %d read back by the writer, %d by the cold reader; %d GenerateDataKey, %d + %d Decrypt",
		encoded.Load(), writerDecoded.Load(), readerDecoded.Load(), w.GenerateDataKeyCalls, w.DecryptCalls, r.DecryptCalls)
	if encoded.Load() == 0 || readerDecoded.Load() == 0 {
		t.Fatal("the goroutines did no work")
	}
	checks := []struct {
		what      string
		got, want uint64
	}{
		{"writer: payloads encoded", w.PayloadsEncoded, encoded.Load()},
		{"writer: bytes encoded", w.BytesEncoded, encodedBytes.Load()},
		{"writer: payloads decoded", w.PayloadsDecoded, writerDecoded.Load()},
		{"writer: payloads passed through", w.PayloadsPassedThrough, plain.Load()},
		{"writer: encrypt cache hits and misses", w.EncryptCacheHits + w.EncryptCacheMisses, encoded.Load()},
		{"writer: decrypt cache hits and misses", w.DecryptCacheHits + w.DecryptCacheMisses, writerDecoded.Load()},
		{"writer: GenerateDataKey calls, against KMS", w.GenerateDataKeyCalls, uint64(writerKMS.GenerateDataKeyCalls.Load())},
		{"writer: Decrypt calls, against KMS", w.DecryptCalls, uint64(writerKMS.DecryptCalls.Load())},
		{"writer: DescribeKey calls", w.DescribeKeyCalls, 0},
		{"reader: payloads decoded", r.PayloadsDecoded, readerDecoded.Load()},
		{"reader: decrypt cache hits and misses", r.DecryptCacheHits + r.DecryptCacheMisses, readerDecoded.Load()},
		{"reader: Decrypt calls, against KMS", r.DecryptCalls, uint64(readerKMS.DecryptCalls.Load())},
		{"reader: GenerateDataKey calls", r.GenerateDataKeyCalls, 0},
		{"KMS failures", w.KMSFailures + r.KMSFailures, 0},
	}
	// A data key is replaced only once it has sealed its 50 payloads, so
	// each namespace used exactly as many data keys as its payloads need.
	var dataKeys uint64
	for ns := range encodedPerNamespace {
		dataKeys += (encodedPerNamespace[ns].Load() + perDataKey - 1) / perDataKey
	}
	checks = append(checks, struct {
		what      string
		got, want uint64
	}{"writer: GenerateDataKey calls, against payloads per data key", w.GenerateDataKeyCalls, dataKeys})
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.what, c.got, c.want)
		}
	}
	var errs uint64
	for _, n := range []uint64{w.ErrorsMalformed, w.ErrorsAuthentication, w.ErrorsKMS, w.ErrorsInternal, r.ErrorsMalformed, r.ErrorsAuthentication, r.ErrorsKMS, r.ErrorsInternal} {
		errs += n
	}
	if errs != 0 {
		t.Errorf("%d errors counted", errs)
	}
}
