package codec

import (
	"sync/atomic"

	"go.temporal.io/sdk/client"

	"github.com/temporal-kms/kmscodec/cache"
)

// Stats is a snapshot of a Codec's counters since it was built, shared by
// all its namespace views.
type Stats struct {
	// KMS calls made, successful or not, and how many failed.
	GenerateDataKeyCalls uint64
	DecryptCalls         uint64
	DescribeKeyCalls     uint64
	KMSFailures          uint64

	// Data-key cache lookups. A payload whose wrapped key KMS recently
	// rejected counts a decrypt miss and a negative hit.
	EncryptCacheHits   uint64
	EncryptCacheMisses uint64
	DecryptCacheHits   uint64
	DecryptCacheMisses uint64
	NegativeCacheHits  uint64

	// Payloads and their data bytes before encryption and after
	// decryption; PayloadsPassedThrough were not encrypted.
	PayloadsEncoded       uint64
	PayloadsDecoded       uint64
	PayloadsPassedThrough uint64
	BytesEncoded          uint64
	BytesDecoded          uint64

	// Failed payloads by the kind of error they failed with (ErrorKind).
	ErrorsMalformed         uint64
	ErrorsAuthentication    uint64
	ErrorsUnsupportedFormat uint64
	ErrorsKeyNotAllowed     uint64
	ErrorsNamespaceMismatch uint64
	ErrorsUnencrypted       uint64
	ErrorsKMSRefused        uint64
	ErrorsKMSUnavailable    uint64
	ErrorsInvalidArgument   uint64
	ErrorsInternal          uint64
	// ErrorsKMS is ErrorsKMSRefused and ErrorsKMSUnavailable together,
	// and ErrorsOther is ErrorsNamespaceMismatch, ErrorsInvalidArgument
	// and ErrorsInternal together: the coarser kinds of earlier versions,
	// for dashboards built on them.
	ErrorsKMS   uint64
	ErrorsOther uint64
}

// Stats returns the codec's counters.
func (c *Codec) Stats() Stats {
	m := c.metrics
	v := func(i int) uint64 { return m.values[i].Load() }
	return Stats{
		GenerateDataKeyCalls:    v(int(cache.GenerateDataKeyCall)),
		DecryptCalls:            v(int(cache.DecryptCall)),
		DescribeKeyCalls:        v(int(cache.DescribeKeyCall)),
		KMSFailures:             v(int(cache.KMSFailure)),
		EncryptCacheHits:        v(int(cache.EncryptHit)),
		EncryptCacheMisses:      v(int(cache.EncryptMiss)),
		DecryptCacheHits:        v(int(cache.DecryptHit)),
		DecryptCacheMisses:      v(int(cache.DecryptMiss)),
		NegativeCacheHits:       v(int(cache.NegativeHit)),
		PayloadsEncoded:         v(payloadsEncoded),
		PayloadsDecoded:         v(payloadsDecoded),
		PayloadsPassedThrough:   v(payloadsPassedThrough),
		BytesEncoded:            v(bytesEncoded),
		BytesDecoded:            v(bytesDecoded),
		ErrorsMalformed:         v(errorCounter(KindMalformed)),
		ErrorsAuthentication:    v(errorCounter(KindAuthentication)),
		ErrorsUnsupportedFormat: v(errorCounter(KindUnsupportedFormat)),
		ErrorsKeyNotAllowed:     v(errorCounter(KindKeyNotAllowed)),
		ErrorsNamespaceMismatch: v(errorCounter(KindNamespaceMismatch)),
		ErrorsUnencrypted:       v(errorCounter(KindUnencrypted)),
		ErrorsKMSRefused:        v(errorCounter(KindKMSRefused)),
		ErrorsKMSUnavailable:    v(errorCounter(KindKMSUnavailable)),
		ErrorsInvalidArgument:   v(errorCounter(KindInvalidArgument)),
		ErrorsInternal:          v(errorCounter(KindInternal)),
		ErrorsKMS:               v(errorCounter(KindKMSRefused)) + v(errorCounter(KindKMSUnavailable)),
		ErrorsOther:             v(errorCounter(KindNamespaceMismatch)) + v(errorCounter(KindInvalidArgument)) + v(errorCounter(KindInternal)),
	}
}

// Counters after the cache's events, by index.
const (
	payloadsEncoded = cache.NumEvents + iota
	payloadsDecoded
	payloadsPassedThrough
	bytesEncoded
	bytesDecoded
	errorsBase  // one counter per Kind from here, KindNone's unused
	numCounters = errorsBase + int(numKinds)
)

// counterNames are the names and tags under which each counter goes to a
// client.MetricsHandler.
var counterNames = [numCounters]struct {
	name string
	tags map[string]string
}{
	cache.EncryptHit:          {"kmscodec_cache_hits", map[string]string{"side": "encrypt"}},
	cache.EncryptMiss:         {"kmscodec_cache_misses", map[string]string{"side": "encrypt"}},
	cache.DecryptHit:          {"kmscodec_cache_hits", map[string]string{"side": "decrypt"}},
	cache.DecryptMiss:         {"kmscodec_cache_misses", map[string]string{"side": "decrypt"}},
	cache.GenerateDataKeyCall: {"kmscodec_kms_calls", map[string]string{"operation": "GenerateDataKey"}},
	cache.DecryptCall:         {"kmscodec_kms_calls", map[string]string{"operation": "Decrypt"}},
	cache.DescribeKeyCall:     {"kmscodec_kms_calls", map[string]string{"operation": "DescribeKey"}},
	cache.KMSFailure:          {"kmscodec_kms_failures", nil},
	cache.NegativeHit:         {"kmscodec_negative_cache_hits", nil},
	payloadsEncoded:           {"kmscodec_payloads", map[string]string{"operation": "encode"}},
	payloadsDecoded:           {"kmscodec_payloads", map[string]string{"operation": "decode"}},
	payloadsPassedThrough:     {"kmscodec_payloads", map[string]string{"operation": "pass_through"}},
	bytesEncoded:              {"kmscodec_payload_bytes", map[string]string{"operation": "encode"}},
	bytesDecoded:              {"kmscodec_payload_bytes", map[string]string{"operation": "decode"}},
}

func init() {
	for k := KindNone + 1; k < numKinds; k++ {
		counterNames[errorCounter(k)] = struct {
			name string
			tags map[string]string
		}{"kmscodec_errors", map[string]string{"kind": k.String()}}
	}
}

// metrics keeps the counters, and forwards them to a MetricsHandler when
// there is one.
type metrics struct {
	values   [numCounters]atomic.Uint64
	handlers [numCounters]client.MetricsCounter // nil without a handler
}

func newMetrics(h client.MetricsHandler) *metrics {
	m := &metrics{}
	if h != nil {
		for i, c := range counterNames {
			if c.name == "" { // KindNone's error counter
				continue
			}
			m.handlers[i] = h.WithTags(c.tags).Counter(c.name)
		}
	}
	return m
}

func (m *metrics) record(e cache.Event) { m.add(int(e), 1) }

func (m *metrics) add(i int, n uint64) {
	if n == 0 {
		return
	}
	m.values[i].Add(n)
	if h := m.handlers[i]; h != nil {
		h.Inc(int64(n))
	}
}

// errorCounter is the index of the counter of errors of kind k.
func errorCounter(k Kind) int { return errorsBase + int(k) }

// countError counts one error of kind k.
func (m *metrics) countError(k Kind) {
	m.add(errorCounter(k), 1)
}
