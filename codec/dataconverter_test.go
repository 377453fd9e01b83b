package codec_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

func TestDataConverterEncryptsValues(t *testing.T) {
	fake := kmstest.New()
	dc := codec.NewDataConverter(newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey()}), codec.DataConverterOptions{})
	p, err := dc.ToPayload(map[string]string{"card": "4111-1111"})
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Metadata["encoding"]) != "binary/encrypted" || strings.Contains(string(p.Data), "4111") {
		t.Fatalf("payload not encrypted: %q", p.Metadata)
	}
	var back map[string]string
	if err := dc.FromPayload(p, &back); err != nil || back["card"] != "4111-1111" {
		t.Fatalf("got %v, %v", back, err)
	}
}

func TestDataConverterCompressesBeforeEncrypting(t *testing.T) {
	fake := kmstest.New()
	c := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey()})
	value := strings.Repeat("all work and no play ", 1000)
	plain, _ := codec.NewDataConverter(c, codec.DataConverterOptions{}).ToPayload(value)
	dc := codec.NewDataConverter(c, codec.DataConverterOptions{Compress: true})
	compressed, err := dc.ToPayload(value)
	if err != nil {
		t.Fatal(err)
	}
	if len(compressed.Data) >= len(plain.Data)/10 {
		t.Fatalf("compressed payload is %d bytes, uncompressed %d", len(compressed.Data), len(plain.Data))
	}
	var back string
	if err := dc.FromPayload(compressed, &back); err != nil || back != value {
		t.Fatalf("round trip: %v", err)
	}
}

func TestFailureConverterEncryptsMessagesAndStackTraces(t *testing.T) {
	fake := kmstest.New()
	dc := codec.NewDataConverter(newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey()}), codec.DataConverterOptions{})
	fc := codec.NewFailureConverter(dc)
	f := fc.ErrorToFailure(temporal.NewApplicationError("card 4111 declined", "Declined", "detail 4111"))
	if f.Message != "Encoded failure" || f.StackTrace != "" || f.EncodedAttributes == nil {
		t.Fatalf("failure not encoded: %v", f)
	}
	if string(f.EncodedAttributes.Metadata["encoding"]) != "binary/encrypted" {
		t.Fatal("encoded attributes not encrypted")
	}
	if d := f.GetApplicationFailureInfo().GetDetails().GetPayloads(); len(d) != 1 || string(d[0].Metadata["encoding"]) != "binary/encrypted" {
		t.Fatal("failure details not encrypted")
	}
	err := fc.FailureToError(f)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !strings.Contains(appErr.Error(), "card 4111 declined") {
		t.Fatalf("decoded failure: %v", err)
	}
}

func TestMetricsHandlerReceivesTheCounters(t *testing.T) {
	fake := kmstest.New()
	h := &countingHandler{counts: map[string]int64{}}
	c := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey(), MetricsHandler: h})
	mustDecode(t, c, encode(t, c, payloads(3)...))
	for name, want := range map[string]int64{
		"kmscodec_kms_calls operation=GenerateDataKey": 1,
		"kmscodec_payloads operation=encode":           3,
		"kmscodec_payloads operation=decode":           3,
		"kmscodec_cache_hits side=encrypt":             2,
		"kmscodec_cache_hits side=decrypt":             3,
	} {
		if got := h.get(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}

// countingHandler is a client.MetricsHandler that sums counters by name
// and tags.
type countingHandler struct {
	mu     sync.Mutex
	tags   string
	counts map[string]int64
	parent *countingHandler
}

func (h *countingHandler) root() *countingHandler {
	if h.parent != nil {
		return h.parent
	}
	return h
}

func (h *countingHandler) get(name string) int64 {
	r := h.root()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[name]
}

func (h *countingHandler) WithTags(tags map[string]string) client.MetricsHandler {
	s := ""
	for k, v := range tags {
		s += " " + k + "=" + v
	}
	return &countingHandler{tags: h.tags + s, parent: h.root()}
}

func (h *countingHandler) Counter(name string) client.MetricsCounter {
	return counterFunc(func(n int64) {
		r := h.root()
		r.mu.Lock()
		defer r.mu.Unlock()
		r.counts[name+h.tags] += n
	})
}

func (h *countingHandler) Gauge(string) client.MetricsGauge {
	return client.MetricsNopHandler.Gauge("")
}
func (h *countingHandler) Timer(string) client.MetricsTimer {
	return client.MetricsNopHandler.Timer("")
}

type counterFunc func(int64)

func (f counterFunc) Inc(n int64) { f(n) }
