package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"

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

// testServer is a codec server on 127.0.0.1 with a port chosen at run
// time, and what the tests need to look inside it.
type testServer struct {
	url     string
	logs    *syncBuffer
	codec   *codec.Codec
	metrics *httpMetrics
}

// startServer serves a codec on api (allowed keys: newKeyARN to encrypt
// and decrypt, oldKeyARN to decrypt) with auth and cfg.
func startServer(t *testing.T, api kmsapi.API, auth authenticator, cfg serverConfig) *testServer {
	t.Helper()
	c, err := codec.New(codec.Options{
		KMS:               api,
		KeyID:             newKeyARN,
		DecryptKeyIDs:     []string{oldKeyARN},
		DisableEncryption: !cfg.EnableEncode,
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	metrics := newHTTPMetrics()
	srv := httptest.NewServer(newServer(c, auth, cfg, log, metrics))
	t.Cleanup(srv.Close)
	return &testServer{url: srv.URL, logs: logs, codec: c, metrics: metrics}
}

// staticAuth accepts staticTestToken.
func staticAuth(t *testing.T) authenticator {
	t.Helper()
	tok, err := newStaticToken(staticTestToken)
	if err != nil {
		t.Fatal(err)
	}
	return &tokenAuth{static: tok}
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

// request sends one request; headers are name, value pairs.
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
// JWKS with one RSA key, made for the test.
type testIssuer struct {
	url string
	key *rsa.PrivateKey
	kid string
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
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
			Key: &key.PublicKey, KeyID: iss.kid, Algorithm: string(jose.RS256), Use: "sig",
		}}})
	})
	return iss
}

// verifier is a verifier of the issuer's tokens for testAudience.
func (iss *testIssuer) verifier(t *testing.T) *oidcVerifier {
	t.Helper()
	v, err := newOIDCVerifier(context.Background(), oidcConfig{issuer: iss.url, audience: testAudience, claim: "permissions"})
	if err != nil {
		t.Fatal(err)
	}
	return v
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
