package codecserver

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/temporal-kms/kmscodec/codec"
	kmsapi "github.com/temporal-kms/kmscodec/kms"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// staticTestToken is the static bearer token of the handler tests.
const staticTestToken = "test-token-0123456789abcdef0123456789abcdef"

// syncBuffer is a log sink that tests read while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The keys of the fake KMS.
const (
	oldKeyARN = "arn:aws:kms:us-east-1:111122223333:key/0a1b2c3d-0000-4000-8000-000000000001"
	newKeyARN = "arn:aws:kms:us-east-1:111122223333:key/0a1b2c3d-0000-4000-8000-000000000002"
)

// testServer is a codec server on 127.0.0.1 with a port chosen at run
// time, and what the tests need to look inside it.
type testServer struct {
	url     string
	logs    *syncBuffer
	codec   *codec.Codec
	server  *Server
	metrics *prometheus.Registry
}

// newTestCodec is a codec on api allowed newKeyARN to encrypt and
// decrypt and oldKeyARN to decrypt, encrypting only if encode.
func newTestCodec(t testing.TB, api kmsapi.API, encode bool) *codec.Codec {
	t.Helper()
	c, err := codec.New(codec.Options{
		KMS:               api,
		KeyID:             newKeyARN,
		DecryptKeyIDs:     []string{oldKeyARN},
		DisableEncryption: !encode,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startServer serves opts, with a codec on api (see newTestCodec) unless
// opts.Codec is set, and the static token staticTestToken unless some
// authentication is set.
func startServer(t *testing.T, api kmsapi.API, opts Options) *testServer {
	t.Helper()
	ts := &testServer{logs: &syncBuffer{}, metrics: prometheus.NewRegistry()}
	if opts.Codec == nil {
		ts.codec = newTestCodec(t, api, opts.EnableEncode)
		opts.Codec = KMSCodec{Codec: ts.codec}
	}
	if opts.StaticToken == "" && opts.ScopedTokenFile == "" && opts.OIDC == nil && !opts.InsecureNoAuth {
		opts.StaticToken = staticTestToken
	}
	opts.Logger = slog.New(slog.NewJSONHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Metrics = ts.metrics
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts.server = srv
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	ts.url = hs.URL
	return ts
}

// newFakeKMS returns an in-memory KMS holding keyARNs. Its key material
// is derived from the ARN, so payloads encrypted by one fake decrypt with
// another, and the committed fixtures decrypt in every run.
func newFakeKMS(keyARNs ...string) *kmstest.KMS {
	k := kmstest.New()
	for _, arn := range keyARNs {
		k.AddKey(arn)
	}
	return k
}

// encrypted returns n payloads encrypted under keyARN, as a worker in
// namespace would write them (namespace "" leaves them unbound).
func encrypted(t testing.TB, keyARN, namespace string, n int) []*commonpb.Payload {
	t.Helper()
	c, err := codec.New(codec.Options{KMS: newFakeKMS(keyARN), KeyID: keyARN, Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Encode(plain(n))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// plain returns n distinct json/plain payloads.
func plain(n int) []*commonpb.Payload {
	ps := make([]*commonpb.Payload, n)
	for i := range ps {
		ps[i] = &commonpb.Payload{
			Metadata: map[string][]byte{"encoding": []byte("json/plain")},
			Data:     []byte(`{"n":` + strings.Repeat("1", 1+i%5) + `}`),
		}
	}
	return ps
}

// body is the codec protocol's request body for ps.
func body(t testing.TB, ps []*commonpb.Payload) string {
	t.Helper()
	b, err := protojson.Marshal(&commonpb.Payloads{Payloads: ps})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// response is what a test reads back from the server.
type response struct {
	status  int
	header  http.Header
	body    []byte
	errBody apiError
}

// payloads parses a successful response.
func (r *response) payloads(t *testing.T) []*commonpb.Payload {
	t.Helper()
	var msg commonpb.Payloads
	if err := protojson.Unmarshal(r.body, &msg); err != nil {
		t.Fatalf("response is not payloads: %v: %s", err, r.body)
	}
	return msg.Payloads
}

// request sends one request; headers are name, value pairs. A POST is
// sent as application/json unless headers say otherwise.
func request(t *testing.T, method, url, reqBody string, headers ...string) *response {
	t.Helper()
	var rd io.Reader
	if reqBody != "" {
		rd = strings.NewReader(reqBody)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) *response {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := &response{status: resp.StatusCode, header: resp.Header, body: b}
	if resp.StatusCode >= 400 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &r.errBody); err != nil {
			t.Fatalf("error response is not JSON: %s", b)
		}
	}
	return r
}

// testIssuer is an OIDC issuer on 127.0.0.1: a discovery document and a
// JWKS with one RSA key, made for the test. It counts the fetches of its
// JWKS, and holds each until gate (if set) is closed.
type testIssuer struct {
	url     string
	key     *rsa.PrivateKey
	kid     string
	fetches atomic.Int64
	gate    atomic.Pointer[chan struct{}]
}

// holdFetches makes JWKS fetches wait until the returned func is first
// called.
func (iss *testIssuer) holdFetches() (release func()) {
	ch := make(chan struct{})
	iss.gate.Store(&ch)
	return sync.OnceFunc(func() { close(ch) })
}

const testAudience = "kmscodec-test"

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss := &testIssuer{key: key, kid: "test-key-1"}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	iss.url = srv.URL
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                iss.url,
			"jwks_uri":                              iss.url + "/jwks",
			"authorization_endpoint":                iss.url + "/authorize",
			"token_endpoint":                        iss.url + "/token",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		iss.fetches.Add(1)
		if g := iss.gate.Load(); g != nil {
			<-*g
		}
		signing, err := json.Marshal(jose.JSONWebKey{Key: &key.PublicKey, KeyID: iss.kid, Algorithm: string(jose.RS256), Use: "sig"})
		if err != nil {
			panic(err)
		}
		// Beside its signing key, a key of a type no library knows yet,
		// as issuers publish: it must not spoil the set.
		fmt.Fprintf(w, `{"keys":[%s,{"kty":"future-kty","kid":"future","use":"sig"}]}`, signing)
	})
	return iss
}

// options are OIDC options accepting the issuer's tokens for
// testAudience.
func (iss *testIssuer) options() *OIDCOptions {
	return &OIDCOptions{Issuer: iss.url, Audience: testAudience}
}

// token signs the default claims (subject alice, audience testAudience,
// valid for five minutes, permission default:read) changed by edit.
func (iss *testIssuer) token(t *testing.T, edit func(claims map[string]any)) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{
		"iss":         iss.url,
		"sub":         "alice",
		"aud":         testAudience,
		"iat":         now.Unix(),
		"exp":         now.Add(5 * time.Minute).Unix(),
		"permissions": []string{"default:read"},
	}
	if edit != nil {
		edit(claims)
	}
	return iss.sign(t, iss.key, iss.kid, claims)
}

func (iss *testIssuer) sign(t *testing.T, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
