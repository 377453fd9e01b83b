package cache

import (
	"bytes"
	"testing"

	"github.com/temporal-kms/kmscodec/mocks"
)

// BenchmarkDecryptionKeysHit is the cache's share of a warm decode, from
// as many goroutines as GOMAXPROCS: every decode on every core looks its
// data key up here, so a lock taken on a hit shows as lost scaling.
func BenchmarkDecryptionKeysHit(b *testing.B) {
	c, _ := NewDecryptionKeys(mocks.NewMockAPI(nil), DecryptionOptions{})
	id := string(bytes.Repeat([]byte{'i'}, 300))
	c.Add(id, make([]byte, 32))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := c.Cached(id); !ok {
				b.Error("miss")
				return
			}
		}
	})
}
