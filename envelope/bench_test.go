package envelope

import (
	"crypto/rand"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
)

// The per-payload steps of the format on their own, for profiling; the
// codec's benchmarks compare the whole path with its peers.

func BenchmarkDerive(b *testing.B) {
	dataKey, salt := make([]byte, 32), make([]byte, 32)
	rand.Read(dataKey)
	rand.Read(salt)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := derive(dataKey, salt); err != nil {
			b.Fatal(err)
		}
	}
}

func benchInput() *commonpb.Payload {
	p := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: make([]byte, 1<<10)}
	rand.Read(p.Data)
	return p
}

func BenchmarkSeal1KiB(b *testing.B) {
	k, _ := testKey(b, map[string]string{"temporal-namespace": "default"})
	p := benchInput()
	b.SetBytes(int64(len(p.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Seal(p, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseOpen1KiB(b *testing.B) {
	k, dataKey := testKey(b, map[string]string{"temporal-namespace": "default"})
	p := benchInput()
	sealed, err := k.Seal(p, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(p.Data)))
	b.ReportAllocs()
	for b.Loop() {
		e, err := Parse(sealed)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Open(dataKey); err != nil {
			b.Fatal(err)
		}
	}
}
