package main

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/temporal-kms/kmscodec/codec"
)

// codecCollector exposes a Codec's counters to Prometheus. It reads
// Codec.Stats at scrape time, so the codec needs no knowledge of
// Prometheus and the numbers are never stale.
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

func newCodecCollector(stats func() codec.Stats) *codecCollector {
	// Each family is one metric name with at most one label, whose
	// values are fixed: const labels keep the collector free of state.
	family := func(name, help, label string) func(string, func(codec.Stats) uint64) codecMetric {
		return func(value string, f func(codec.Stats) uint64) codecMetric {
			var labels prometheus.Labels
			if label != "" {
				labels = prometheus.Labels{label: value}
			}
			return codecMetric{desc: prometheus.NewDesc(name, help, nil, labels), value: f}
		}
	}
	calls := family("kmscodec_kms_calls_total", "KMS calls made, by operation, failed ones included.", "operation")
	failures := family("kmscodec_kms_failures_total", "KMS calls that failed.", "")
	hits := family("kmscodec_cache_hits_total", "Data key cache hits, by side.", "side")
	misses := family("kmscodec_cache_misses_total", "Data key cache misses, by side.", "side")
	negative := family("kmscodec_negative_cache_hits_total", "Payloads refused because KMS recently rejected their wrapped key.", "")
	payloads := family("kmscodec_payloads_total", "Payloads processed, by operation.", "operation")
	bytes := family("kmscodec_payload_bytes_total", "Payload data bytes before encryption and after decryption, by operation.", "operation")
	errs := family("kmscodec_errors_total", "Payloads that failed, by kind of error.", "kind")
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
		errs("malformed", func(s codec.Stats) uint64 { return s.ErrorsMalformed }),
		errs("authentication", func(s codec.Stats) uint64 { return s.ErrorsAuthentication }),
		errs("unsupported_format", func(s codec.Stats) uint64 { return s.ErrorsUnsupportedFormat }),
		errs("key_not_allowed", func(s codec.Stats) uint64 { return s.ErrorsKeyNotAllowed }),
		errs("unencrypted", func(s codec.Stats) uint64 { return s.ErrorsUnencrypted }),
		errs("kms", func(s codec.Stats) uint64 { return s.ErrorsKMS }),
		errs("other", func(s codec.Stats) uint64 { return s.ErrorsOther }),
	}}
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

// httpMetrics counts the codec server's requests. A nil *httpMetrics
// counts nothing, so the server need not check.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics() *httpMetrics {
	return &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmscodec_http_requests_total",
			Help: "Codec server requests, by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kmscodec_http_request_duration_seconds",
			Help:    "Codec server request latency, by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
	}
}

func (m *httpMetrics) observe(route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// metricsRegistry gathers the codec's counters, the server's request
// metrics and the Go runtime and process metrics.
func metricsRegistry(c *codec.Codec, h *httpMetrics) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCodecCollector(c.Stats),
		h.requests,
		h.duration,
	)
	return reg
}

// metricsHandler serves reg in the Prometheus exposition format.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}
