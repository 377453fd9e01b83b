package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// loadRequest is one /decode request of the load test: its body, and the
// payloads the server must answer with.
type loadRequest struct {
	body []byte
	want []*commonpb.Payload
}

// loadRequests returns n requests of 1 to 4 payloads each, encrypted by c
// in namespace "default", with data of 16 bytes to 4 KiB.
func loadRequests(t *testing.T, c *codec.Codec, n int) []loadRequest {
	t.Helper()
	dc := converter.GetDefaultDataConverter()
	out := make([]loadRequest, n)
	for i := range out {
		var plain []*commonpb.Payload
		for j := 0; j <= i%4; j++ {
			size := 16 << ((i + j) % 9) // 16 B .. 4 KiB
			b := make([]byte, size/2)
			_, _ = rand.Read(b)
			p, err := dc.ToPayload(fmt.Sprintf("request %d payload %d: %x", i, j, b))
			if err != nil {
				t.Fatal(err)
			}
			plain = append(plain, p)
		}
		enc, err := c.Encode(plain)
		if err != nil {
			t.Fatalf("encode the load test's payloads: %v", err)
		}
		body, err := protojson.Marshal(&commonpb.Payloads{Payloads: enc})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = loadRequest{body: body, want: plain}
	}
	return out
}

// loadClient sends /decode requests with the codec protocol's headers and
// checks every answer.
type loadClient struct {
	url      string
	token    string
	http     *http.Client
	requests []loadRequest

	mu       sync.Mutex
	verified map[int][]byte // each request's answer, once checked in full
}

// do sends request i and returns an error unless the server answered 200
// with exactly the request's payloads, decrypted.
func (c *loadClient) do(ctx context.Context, i int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/decode", bytes.NewReader(c.requests[i].body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Namespace", "default")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	// The server's JSON for one request is the same every time: compare
	// bytes once the first answer has been checked payload by payload.
	c.mu.Lock()
	seen, ok := c.verified[i]
	c.mu.Unlock()
	if ok && bytes.Equal(seen, b) {
		return nil
	}
	var got commonpb.Payloads
	if err := protojson.Unmarshal(b, &got); err != nil {
		return fmt.Errorf("answer is not payloads: %w", err)
	}
	want := c.requests[i].want
	if len(got.Payloads) != len(want) {
		return fmt.Errorf("%d payloads in the answer, want %d", len(got.Payloads), len(want))
	}
	for j := range want {
		if !proto.Equal(got.Payloads[j], want[j]) {
			return fmt.Errorf("payload %d of request %d did not decode to what was encrypted", j, i)
		}
	}
	c.mu.Lock()
	c.verified[i] = b
	c.mu.Unlock()
	return nil
}

// loadResult is what a load phase measured.
type loadResult struct {
	requests  int
	failures  map[string]int // by status or error, for messages
	latencies []time.Duration
	elapsed   time.Duration
}

// run sends requests from clients goroutines for d and measures them.
func (c *loadClient) run(ctx context.Context, clients int, d time.Duration) loadResult {
	var (
		mu  sync.Mutex
		res = loadResult{failures: map[string]int{}}
		wg  sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for g := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			failures := map[string]int{}
			for i := g; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				t0 := time.Now()
				err := c.do(ctx, i%len(c.requests))
				lat = append(lat, time.Since(t0))
				if err != nil {
					msg := err.Error()
					if len(msg) > 120 {
						msg = msg[:120]
					}
					failures[msg]++
				}
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			for k, v := range failures {
				res.failures[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.requests = len(res.latencies)
	slices.Sort(res.latencies)
	return res
}

func (r loadResult) percentile(p int) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, len(r.latencies)*p/100)]
}

// metricValue returns the value of the Prometheus sample whose name and
// labels are exactly series, such as
// `kmscodec_kms_calls_total{operation="Decrypt"}`.
func metricValue(t *testing.T, metricsURL, series string) float64 {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return v
		}
	}
	t.Fatalf("no metric %s at %s", series, metricsURL)
	return 0
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// TestCodecServerLoad runs the kmscodec serve binary against the KMS
// emulator and has 32 concurrent clients in this process decode valid
// payloads for 10 seconds, as Web UI users would. Every request must
// succeed with the right plaintext, KMS must be asked once per data key,
// and the server's memory must not grow once warm.
func TestCodecServerLoad(t *testing.T) {
	const (
		clients    = 32
		warmup     = 2 * time.Second
		duration   = 10 * time.Second
		maxGrowth  = 64 << 20
		nRequests  = 16
		perDataKey = 8
	)
	k := harness.StartKMS(t)
	keyARN := k.MustCreateKey(t, "codec server load")
	tokenBytes := make([]byte, 24)
	_, _ = rand.Read(tokenBytes)
	token := hex.EncodeToString(tokenBytes)

	srv := startKMSCodecServer(t, k, keyARN, []string{"KMSCODEC_AUTH_TOKEN=" + token},
		"--metrics-listen", "127.0.0.1:0",
		// Access logs of thousands of requests would measure the log.
		"--log-level", "warn",
	)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") || !strings.HasPrefix(srv.MetricsURL, "http://127.0.0.1:") {
		t.Fatalf("codec server at %q, metrics at %q: want loopback", srv.URL, srv.MetricsURL)
	}
	pid := srv.Process.Pid()

	// The payloads a worker in namespace "default" writes, under a few
	// data keys.
	writer := newCodec(t, k, codec.Options{KeyID: keyARN, Namespace: "default", MaxPayloadsPerDataKey: perDataKey})
	requests := loadRequests(t, writer, nRequests)
	payloads := 0
	for _, r := range requests {
		payloads += len(r.want)
	}
	dataKeys := (payloads + perDataKey - 1) / perDataKey

	lc := &loadClient{
		url:      srv.URL,
		token:    token,
		requests: requests,
		verified: map[int][]byte{},
		http: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 2 * clients, IdleConnTimeout: 30 * time.Second},
		},
	}
	t.Cleanup(lc.http.CloseIdleConnections)
	ctx := testContext(t, 2*time.Minute)

	rssIdle, err := harness.ResidentSetSize(pid)
	if err != nil {
		t.Fatal(err)
	}
	for i := range requests {
		if err := lc.do(ctx, i); err != nil {
			t.Fatalf("request %d before the load: %v", i, err)
		}
	}
	warm := lc.run(ctx, clients, warmup)
	rssWarm, err := harness.ResidentSetSize(pid)
	if err != nil {
		t.Fatal(err)
	}
	res := lc.run(ctx, clients, duration)
	rssEnd, err := harness.ResidentSetSize(pid)
	if err != nil {
		t.Fatal(err)
	}

	for _, phase := range []loadResult{warm, res} {
		for msg, n := range phase.failures {
			t.Errorf("%d requests failed: %s", n, msg)
		}
	}
	if res.requests == 0 {
		t.Fatal("no request was made in the measured phase")
	}
	if t.Failed() {
		t.FailNow()
	}

	served := metricValue(t, srv.MetricsURL, `kmscodec_http_requests_total{code="200",route="decode"}`)
	if total := len(requests) + warm.requests + res.requests; served != float64(total) {
		t.Errorf("the server counted %v successful decodes, the clients %d", served, total)
	}
	decrypts := metricValue(t, srv.MetricsURL, `kmscodec_kms_calls_total{operation="Decrypt"}`)
	if decrypts < 1 || decrypts > float64(dataKeys) {
		t.Errorf("the server made %v Decrypt calls for %d data keys", decrypts, dataKeys)
	}
	if n := k.Calls(harness.OpDecrypt); float64(n) != decrypts {
		t.Errorf("the emulator saw %d Decrypt calls, the server counted %v", n, decrypts)
	}
	growth := rssEnd - rssWarm
	if growth > maxGrowth {
		t.Errorf("the server's resident memory grew by %s under steady load (%s warm, %s at the end), over the bound of %s",
			mib(growth), mib(rssWarm), mib(rssEnd), mib(maxGrowth))
	}

	t.Logf("%d clients for %v: %d requests of 1-4 payloads, %.0f requests/s, latency p50 %v, p99 %v, max %v; all 200 with the right plaintext",
		clients, res.elapsed.Round(time.Millisecond), res.requests, float64(res.requests)/res.elapsed.Seconds(),
		res.percentile(50).Round(10*time.Microsecond), res.percentile(99).Round(10*time.Microsecond),
		res.latencies[len(res.latencies)-1].Round(10*time.Microsecond))
	t.Logf("warm-up: %d requests in %v (%.0f/s)", warm.requests, warm.elapsed.Round(time.Millisecond), float64(warm.requests)/warm.elapsed.Seconds())
	t.Logf("server RSS: %s idle, %s after warm-up, %s at the end (%+.1f MiB under load; bound +%s)",
		mib(rssIdle), mib(rssWarm), mib(rssEnd), float64(growth)/(1<<20), mib(maxGrowth))
	t.Logf("KMS: %v Decrypt calls for %d payloads under %d data keys; emulator: %s", decrypts, payloads, dataKeys, k)
}
