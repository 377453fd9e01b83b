package codecserver

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/temporal-kms/kmscodec/codec"
)

// Names of the server's own metrics. The codec's are codec.Metric*.
const (
	MetricHTTPRequests        = "kmscodec_http_requests_total"
	MetricHTTPRequestDuration = "kmscodec_http_request_duration_seconds"
)

// NewCodecCollector exposes a codec.Codec's counters to Prometheus, under
// the names in codec.Metric* with the suffix "_total". It reads stats
// (usually Codec.Stats) at scrape time, so the codec needs no knowledge
// of Prometheus and the numbers are never stale.
func NewCodecCollector(stats func() codec.Stats) prometheus.Collector {
	// Each family is one metric name with at most one label, whose
	// values are fixed: const labels keep the collector free of state.
	family := func(name, help, label string) func(string, func(codec.Stats) uint64) codecMetric {
		return func(value string, f func(codec.Stats) uint64) codecMetric {
			var labels prometheus.Labels
			if label != "" {
				labels = prometheus.Labels{label: value}
			}
			return codecMetric{desc: prometheus.NewDesc(name+"_total", help, nil, labels), value: f}
		}
	}
	calls := family(codec.MetricKMSCalls, "KMS calls made, by operation, failed ones included.", "operation")
	failures := family(codec.MetricKMSFailures, "KMS calls that failed.", "")
	hits := family(codec.MetricCacheHits, "Data key cache hits, by side.", "side")
	misses := family(codec.MetricCacheMisses, "Data key cache misses, by side.", "side")
	negative := family(codec.MetricNegativeCacheHits, "Payloads refused because KMS recently rejected their wrapped key.", "")
	payloads := family(codec.MetricPayloads, "Payloads processed, by operation.", "operation")
	bytes := family(codec.MetricPayloadBytes, "Payload data bytes before encryption and after decryption, by operation.", "operation")
	errs := family(codec.MetricErrors, "Payloads that failed, by kind of error.", "kind")
	return &codecCollector{stats: stats, metrics: []codecMetric{
		calls("GenerateDataKey", func(s codec.Stats) uint64 { return s.GenerateDataKeyCalls }),
		calls("Decrypt", func(s codec.Stats) uint64 { return s.DecryptCalls }),
		calls("DescribeKey", func(s codec.Stats) uint64 { return s.DescribeKeyCalls }),
		failures("", func(s codec.Stats) uint64 { return s.KMSFailures }),
		hits("encrypt", func(s codec.Stats) uint64 { return s.EncryptCacheHits }),
		hits("decrypt", func(s codec.Stats) uint64 { return s.DecryptCacheHits }),
		misses("encrypt", func(s codec.Stats) uint64 { return s.EncryptCacheMisses }),
		misses("decrypt", func(s codec.Stats) uint64 { return s.DecryptCacheMisses }),
		negative("", func(s codec.Stats) uint64 { return s.NegativeCacheHits }),
		payloads("encode", func(s codec.Stats) uint64 { return s.PayloadsEncoded }),
		payloads("decode", func(s codec.Stats) uint64 { return s.PayloadsDecoded }),
		payloads("pass_through", func(s codec.Stats) uint64 { return s.PayloadsPassedThrough }),
		bytes("encode", func(s codec.Stats) uint64 { return s.BytesEncoded }),
		bytes("decode", func(s codec.Stats) uint64 { return s.BytesDecoded }),
		// The kinds are codec.Kind's names, as the codec tags them for a
		// MetricsHandler.
		errs(codec.KindMalformed.String(), func(s codec.Stats) uint64 { return s.ErrorsMalformed }),
		errs(codec.KindAuthentication.String(), func(s codec.Stats) uint64 { return s.ErrorsAuthentication }),
		errs(codec.KindUnsupportedFormat.String(), func(s codec.Stats) uint64 { return s.ErrorsUnsupportedFormat }),
		errs(codec.KindKeyNotAllowed.String(), func(s codec.Stats) uint64 { return s.ErrorsKeyNotAllowed }),
		errs(codec.KindNamespaceMismatch.String(), func(s codec.Stats) uint64 { return s.ErrorsNamespaceMismatch }),
		errs(codec.KindUnencrypted.String(), func(s codec.Stats) uint64 { return s.ErrorsUnencrypted }),
		errs(codec.KindKMSRefused.String(), func(s codec.Stats) uint64 { return s.ErrorsKMSRefused }),
		errs(codec.KindKMSUnavailable.String(), func(s codec.Stats) uint64 { return s.ErrorsKMSUnavailable }),
		errs(codec.KindInvalidArgument.String(), func(s codec.Stats) uint64 { return s.ErrorsInvalidArgument }),
		errs(codec.KindInternal.String(), func(s codec.Stats) uint64 { return s.ErrorsInternal }),
	}}
}

type codecCollector struct {
	stats   func() codec.Stats
	metrics []codecMetric
}

// codecMetric is one time series: a counter with fixed labels, read from
// a field of codec.Stats.
type codecMetric struct {
	desc  *prometheus.Desc
	value func(codec.Stats) uint64
}

// Describe implements prometheus.Collector.
func (c *codecCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

// Collect implements prometheus.Collector.
func (c *codecCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	for _, m := range c.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(m.value(s)))
	}
}

// httpMetrics counts the server's requests. A nil *httpMetrics counts
// nothing, so the server need not check.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricHTTPRequests,
			Help: "Codec server requests, by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricHTTPRequestDuration,
			Help:    "Codec server request latency, by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *httpMetrics) observe(route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}
