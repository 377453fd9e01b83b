package codecserver

// Regression tests of the codec server's defences: each failed on the
// server before the defence was built.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	commonpb "go.temporal.io/api/common/v1"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// TestWithoutCORSOriginsNoCrossOriginRequestSucceeds: a server given no
// Web UI origin answers a page on any origin with no CORS header, so the
// browser neither sends the decode nor lets the page read its answer.
func TestWithoutCORSOriginsNoCrossOriginRequestSucceeds(t *testing.T) {
	srv := startServer(t, newFakeKMS(newKeyARN), Options{})
	const evil = "https://evil.example"

	req, err := http.NewRequest(http.MethodOptions, srv.url+"/default/decode", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", evil)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
	preflight := do(t, req)

	post := request(t, http.MethodPost, srv.url+"/default/decode", body(t, encrypted(t, newKeyARN, "default", 1)),
		"Origin", evil, "Authorization", "Bearer "+staticTestToken)

	for name, r := range map[string]*response{"preflight": preflight, "POST": post} {
		for h := range r.header {
			if strings.HasPrefix(h, "Access-Control-") {
				t.Errorf("%s from %s: answered with %s: %q", name, evil, h, r.header.Get(h))
			}
		}
	}
}

// TestInsecureNoAuthAnswersOnlyLoopbackHosts: without authentication, a
// request must be addressed to a loopback name, or a page whose own name
// an attacker re-pointed at 127.0.0.1 (DNS rebinding) could decrypt
// through a developer's browser.
func TestInsecureNoAuthAnswersOnlyLoopbackHosts(t *testing.T) {
	srv := startServer(t, newFakeKMS(newKeyARN), Options{InsecureNoAuth: true})
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.url, "http://"))
	in := body(t, encrypted(t, newKeyARN, "default", 1))
	for _, tt := range []struct {
		host   string
		status int
	}{
		{"127.0.0.1:" + port, 200},
		{"localhost:" + port, 200},
		{"[::1]:" + port, 200},
		{"evil.example:" + port, http.StatusMisdirectedRequest},
		{"evil.example", http.StatusMisdirectedRequest},
		{"127.0.0.1.evil.example:" + port, http.StatusMisdirectedRequest},
	} {
		req, err := http.NewRequest(http.MethodPost, srv.url+"/default/decode", strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tt.host
		req.Header.Set("Content-Type", "application/json")
		r := do(t, req)
		t.Logf("Host %s: status %d", tt.host, r.status)
		if r.status != tt.status {
			t.Errorf("Host %s: status %d, want %d: %s", tt.host, r.status, tt.status, r.body)
		}
	}
}

// TestCodecEndpointsTakeOnlyJSON: a page on another origin can POST a
// form or text/plain without asking the server first (a "simple"
// request); only a JSON body, which needs a CORS preflight, reaches the
// codec.
func TestCodecEndpointsTakeOnlyJSON(t *testing.T) {
	fake := newFakeKMS(newKeyARN)
	srv := startServer(t, fake, Options{EnableEncode: true})
	in := body(t, encrypted(t, newKeyARN, "default", 1))
	for _, tt := range []struct {
		path, contentType string
		status            int
	}{
		{"/default/decode", "application/json", 200},
		{"/default/decode", "application/json; charset=utf-8", 200},
		{"/default/decode", "text/plain", 415},
		{"/default/decode", "application/x-www-form-urlencoded", 415},
		{"/default/decode", "multipart/form-data; boundary=x", 415},
		{"/default/decode", "", 415},
		{"/default/encode", "text/plain", 415},
	} {
		req, err := http.NewRequest(http.MethodPost, srv.url+tt.path, strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+staticTestToken)
		if tt.contentType != "" {
			req.Header.Set("Content-Type", tt.contentType)
		}
		if r := do(t, req); r.status != tt.status {
			t.Errorf("%s as %q: status %d, want %d: %s", tt.path, tt.contentType, r.status, tt.status, r.body)
		}
	}
	if n := fake.Calls("Decrypt"); n != 1 {
		t.Errorf("%d Decrypt calls, want 1 (for the JSON requests only)", n)
	}
}

// strangerKey is an RSA key that no issuer of the tests publishes.
var strangerKey = sync.OnceValue(func() *rsa.PrivateKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return key
})

// forgedToken is a JWT for iss's audience granting everything, signed
// by a key iss does not publish, under kid.
func forgedToken(t *testing.T, iss *testIssuer, kid string) string {
	t.Helper()
	return iss.sign(t, strangerKey(), kid, map[string]any{
		"iss": iss.url, "aud": testAudience, "sub": "mallory",
		"exp": time.Now().Add(time.Hour).Unix(), "permissions": []string{"temporal-system:admin"},
	})
}

// TestForgedTokensDoNotStarveAuthenticatedCallers: requests whose tokens
// are still being verified, against an issuer that is slow to serve its
// keys, must not take the places of authenticated requests.
func TestForgedTokensDoNotStarveAuthenticatedCallers(t *testing.T) {
	iss := newTestIssuer(t)
	oidc := iss.options()
	oidc.JWKSMinRefresh = time.Millisecond // every unknown key fetches
	srv := startServer(t, newFakeKMS(newKeyARN), Options{StaticToken: staticTestToken, OIDC: oidc, MaxInFlight: 4})
	in := body(t, encrypted(t, newKeyARN, "default", 1))
	valid := iss.token(t, nil)
	if r := request(t, http.MethodPost, srv.url+"/default/decode", in, "Authorization", "Bearer "+valid); r.status != 200 {
		t.Fatalf("a valid token before the flood: status %d: %s", r.status, r.body)
	}
	time.Sleep(2 * time.Millisecond)
	release := iss.holdFetches()
	defer release()
	fetchesBefore := iss.fetches.Load()

	const forged = 40
	var wg sync.WaitGroup
	for i := range forged {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := forgedToken(t, iss, fmt.Sprintf("kid-%d", i))
			request(t, http.MethodPost, srv.url+"/default/decode", in, "Authorization", "Bearer "+tok)
		}()
	}
	// Wait until the forged requests wait for the issuer's keys.
	for deadline := time.Now().Add(10 * time.Second); iss.fetches.Load() == fetchesBefore; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no JWKS fetch within 10s")
		}
	}
	time.Sleep(200 * time.Millisecond) // let the rest of the flood arrive
	r := request(t, http.MethodPost, srv.url+"/default/decode", in, "Authorization", "Bearer "+staticTestToken)
	// A JWT under a key already held needs no fetch, and does not wait.
	jwt := request(t, http.MethodPost, srv.url+"/default/decode", in, "Authorization", "Bearer "+valid)
	release()
	wg.Wait()
	t.Logf("a valid JWT during the flood: status %d", jwt.status)
	if jwt.status != 200 {
		t.Errorf("a valid JWT during a flood of %d forged JWTs: status %d, want 200: %s", forged, jwt.status, jwt.body)
	}
	t.Logf("a static-token request during a flood of %d forged JWTs held at the issuer: status %d", forged, r.status)
	if r.status != 200 {
		t.Fatalf("a static-token request during a flood of %d forged JWTs: status %d, want 200: %s", forged, r.status, r.body)
	}
}

// TestForgedTokensDoNotRefetchTheKeys: the issuer's keys are fetched at
// most once per OIDC.JWKSMinRefresh, however many tokens fail; a token
// naming a key already held never causes a fetch.
func TestForgedTokensDoNotRefetchTheKeys(t *testing.T) {
	iss := newTestIssuer(t)
	srv := startServer(t, newFakeKMS(newKeyARN), Options{OIDC: iss.options(), MaxInFlight: 64})
	in := body(t, plain(1))
	if r := request(t, http.MethodPost, srv.url+"/default/decode", in, "Authorization", "Bearer "+iss.token(t, nil)); r.status != 200 {
		t.Fatalf("a valid token: status %d: %s", r.status, r.body)
	}
	knownKid := forgedToken(t, iss, iss.kid) // a bad signature under the real kid
	const n = 1000
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		tok := knownKid
		if i%2 == 1 {
			tok = forgedToken(t, iss, "unknown-"+strconv.Itoa(i))
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if r := request(t, http.MethodPost, srv.url+"/default/decode", in, "Authorization", "Bearer "+tok); r.status != 401 && r.status != 503 {
				t.Errorf("a forged token: status %d, want 401 (or 503)", r.status)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d forged tokens (half under the issuer's kid, half under unknown kids): %d JWKS fetches in all, the first for the valid token", n, iss.fetches.Load())
	if got := iss.fetches.Load(); got > 2 {
		t.Errorf("%d forged tokens caused %d JWKS fetches, want at most 2", n, got)
	}
	if r := request(t, http.MethodPost, srv.url+"/default/decode", in, "Authorization", "Bearer "+iss.token(t, nil)); r.status != 200 {
		t.Errorf("a valid token after the flood: status %d: %s", r.status, r.body)
	}
}

// underDistinctDataKeys returns n payloads in namespace, each under a
// data key of its own.
func underDistinctDataKeys(t testing.TB, n int) []*commonpb.Payload {
	t.Helper()
	c, err := codec.New(codec.Options{KMS: newFakeKMS(newKeyARN), KeyID: newKeyARN, Namespace: "default", MaxPayloadsPerDataKey: 1})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Encode(plain(n))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestKMSCallsPerRequestAreBounded: one read-only request cannot make
// the server call KMS once per payload; it is refused before any call.
func TestKMSCallsPerRequestAreBounded(t *testing.T) {
	kms := &kmstest.Counter{API: newFakeKMS(newKeyARN)}
	srv := startServer(t, kms, Options{})
	r := request(t, http.MethodPost, srv.url+"/default/decode", body(t, underDistinctDataKeys(t, 1000)), "Authorization", "Bearer "+staticTestToken)
	t.Logf("1,000 payloads under 1,000 data keys: status %d %s, %d KMS calls", r.status, r.errBody.Code, kms.Total())
	if r.status != http.StatusTooManyRequests {
		t.Errorf("1,000 payloads under 1,000 data keys: status %d, want 429", r.status)
	}
	if n := kms.Total(); n != 0 {
		t.Errorf("1,000 payloads under 1,000 data keys: %d KMS calls, want 0", n)
	}
	// Within the limit, the request is served.
	r = request(t, http.MethodPost, srv.url+"/default/decode", body(t, underDistinctDataKeys(t, 16)), "Authorization", "Bearer "+staticTestToken)
	if r.status != 200 || kms.DecryptCalls.Load() != 16 {
		t.Errorf("16 payloads under 16 data keys: status %d and %d Decrypt calls, want 200 and 16", r.status, kms.DecryptCalls.Load())
	}
}

// TestCallerKMSRateIsBounded: over time, each caller may cause so many
// KMS calls and no more; one caller spending its budget leaves another's.
func TestCallerKMSRateIsBounded(t *testing.T) {
	iss := newTestIssuer(t)
	kms := &kmstest.Counter{API: newFakeKMS(newKeyARN)}
	srv := startServer(t, kms, Options{OIDC: iss.options(), MaxKMSCallsPerRequest: 10, CallerKMSRate: 0.01, CallerKMSBurst: 20})
	as := func(sub string) string {
		return "Bearer " + iss.token(t, func(c map[string]any) { c["sub"] = sub })
	}
	decode := func(who string) *response {
		return request(t, http.MethodPost, srv.url+"/default/decode", body(t, underDistinctDataKeys(t, 10)), "Authorization", who)
	}
	alice, bob := as("alice"), as("bob")
	for i := range 2 {
		if r := decode(alice); r.status != 200 {
			t.Fatalf("alice's request %d: status %d: %s", i+1, r.status, r.body)
		}
	}
	before := kms.Total()
	r := decode(alice)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Errorf("alice's third request: status %d, Retry-After %q; want 429 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	if kms.Total() != before {
		t.Errorf("a refused request made %d KMS calls", kms.Total()-before)
	}
	if r := decode(bob); r.status != 200 {
		t.Errorf("bob's request: status %d: %s", r.status, r.body)
	}
}

// TestMalformedBodyIsNotLogged: what a malformed body holds may be
// plaintext; neither the log nor the answer repeats it.
func TestMalformedBodyIsNotLogged(t *testing.T) {
	const marker = "PLAINTEXT-MARKER-7f3a"
	srv := startServer(t, newFakeKMS(newKeyARN), Options{})
	for _, b := range []string{
		`{"payloads":[{"data":"` + marker + `"}]}`,
		`{"payloads":[{"metadata":{"encoding":"` + marker + `!"}}]}`,
		`{"payloads": ` + marker + `}`,
		`{"payloads":[{"` + marker + `":1}], "x": }`,
		`{"payloads":[` + marker,
	} {
		r := request(t, http.MethodPost, srv.url+"/default/decode", b, "Authorization", "Bearer "+staticTestToken)
		if r.status != 400 {
			t.Errorf("status %d, want 400", r.status)
		}
		if strings.Contains(string(r.body), marker) {
			t.Errorf("the answer repeats the body: %s", r.body)
		}
	}
	if logs := srv.logs.String(); strings.Contains(logs, marker) {
		t.Errorf("the log repeats the body:\n%s", logs)
	}
}

// blockingKMS passes calls on, holding the first Decrypt until release
// is closed.
type blockingKMS struct {
	*kmstest.Counter
	entered, release chan struct{}
	once             sync.Once
}

func (b *blockingKMS) Decrypt(ctx context.Context, in *awskms.DecryptInput, opts ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
	first := false
	b.once.Do(func() { first = true })
	if first {
		close(b.entered)
		<-b.release
	}
	return b.Counter.Decrypt(ctx, in, opts...)
}

// TestDecodeStopsWhenTheClientLeaves: once the client has gone, the
// server makes no further KMS call for it.
func TestDecodeStopsWhenTheClientLeaves(t *testing.T) {
	kms := &blockingKMS{Counter: &kmstest.Counter{API: newFakeKMS(newKeyARN)}, entered: make(chan struct{}), release: make(chan struct{})}
	srv := startServer(t, kms, Options{})
	in := body(t, underDistinctDataKeys(t, 3))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.url+"/default/decode", strings.NewReader(in))
		if err != nil {
			done <- err
			return
		}
		req.Header.Set("Authorization", "Bearer "+staticTestToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-kms.entered
	cancel() // the client gives up while KMS answers the first call
	<-done
	time.Sleep(100 * time.Millisecond) // the server notices the closed connection
	close(kms.release)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(srv.logs.String(), `"route":"decode"`); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request did not finish within 5s")
		}
	}
	if n := kms.DecryptCalls.Load(); n != 1 {
		t.Errorf("%d Decrypt calls for a client that left during the first, want 1", n)
	}
}
