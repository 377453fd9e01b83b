package codec_test

import (
	"testing"

	commonpb "go.temporal.io/api/common/v1"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// Allocation counts are exact whatever the machine's load, unlike
// timings, so the hot path's budget is checked here: at most 10 objects
// per payload each way with warm caches (docs/PERFORMANCE.md). Of those,
// AES and GCM take one each and the result payload, its metadata map and
// its data buffer take four; the rest is the codec's own.
func TestWarmEncodeAndDecodeStayWithinTheAllocationBudget(t *testing.T) {
	fake := kmstest.New()
	c := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey(), Namespace: "default"})
	for _, batch := range []int{1, 8} {
		in := make([]*commonpb.Payload, batch)
		for i := range in {
			in[i] = &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: make([]byte, 1<<10)}
		}
		encoded := encode(t, c, in...)
		mustDecode(t, c, encoded)
		enc := testing.AllocsPerRun(100, func() { c.Encode(in) }) / float64(batch)
		dec := testing.AllocsPerRun(100, func() { c.Decode(encoded) }) / float64(batch)
		t.Logf("batch of %d: %.3g allocations per payload to encode, %.3g to decode", batch, enc, dec)
		if enc > 10 || dec > 10 {
			t.Errorf("batch of %d: %.3g allocations per payload to encode, %.3g to decode; the budget is 10", batch, enc, dec)
		}
	}
}
