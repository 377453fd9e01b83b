package codec

// Names of the codec's counters, as it gives them to a
// client.MetricsHandler. A Prometheus exporter, such as the codec
// server's, exposes each with the suffix "_total". Tags (labels) are
// given with each field of Stats that feeds them.
const (
	// MetricKMSCalls counts KMS calls made, failed ones included; tag
	// "operation": GenerateDataKey, Decrypt or DescribeKey.
	MetricKMSCalls = "kmscodec_kms_calls"
	// MetricKMSFailures counts KMS calls that failed.
	MetricKMSFailures = "kmscodec_kms_failures"
	// MetricCacheHits and MetricCacheMisses count data-key cache lookups;
	// tag "side": encrypt or decrypt.
	MetricCacheHits   = "kmscodec_cache_hits"
	MetricCacheMisses = "kmscodec_cache_misses"
	// MetricNegativeCacheHits counts payloads refused because KMS
	// recently rejected their wrapped key.
	MetricNegativeCacheHits = "kmscodec_negative_cache_hits"
	// MetricPayloads counts payloads; tag "operation": encode, decode or
	// pass_through.
	MetricPayloads = "kmscodec_payloads"
	// MetricPayloadBytes counts payload data bytes before encryption and
	// after decryption; tag "operation": encode or decode.
	MetricPayloadBytes = "kmscodec_payload_bytes"
	// MetricErrors counts failed payloads; tag "kind": the Kind's
	// String (malformed, authentication, kms_refused, ...).
	MetricErrors = "kmscodec_errors"
)
