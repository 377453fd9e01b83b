package codecserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/golang/mock/gomock"
	"github.com/prometheus/client_golang/prometheus/testutil"
	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/proto"

	"github.com/temporal-kms/kmscodec/kms/kmstest"
	"github.com/temporal-kms/kmscodec/mocks"
)

// TestAuthentication: who may decode and encode. Every refused request
// is refused before KMS is asked anything.
func TestAuthentication(t *testing.T) {
	iss := newTestIssuer(t)
	strangerKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	fake := newFakeKMS(oldKeyARN, newKeyARN)
	srv := startServer(t, fake, Options{StaticToken: staticTestToken, OIDC: iss.options(), EnableEncode: true})
	decodeBody := body(t, encrypted(t, newKeyARN, "default", 1))
	encodeBody := body(t, plain(1))

	tests := []struct {
		name   string
		path   string // default /default/decode
		header string // Authorization header; "" sends none
		status int
		code   string
		msg    string
	}{
		{name: "a request without a token is refused", status: 401, code: codeUnauthenticated, msg: "missing bearer token"},
		{name: "a non-bearer Authorization header is refused", header: "Basic YWxpY2U6c2VjcmV0", status: 401, msg: "is not 'Bearer <token>'"},
		{name: "an empty bearer token is refused", header: "Bearer ", status: 401},
		{name: "a wrong static token is refused", header: "Bearer " + strings.Repeat("x", len(staticTestToken)), status: 401, msg: "invalid token"},
		{name: "the static token decodes", header: "Bearer " + staticTestToken, status: 200},
		{name: "the bearer scheme is case-insensitive", header: "bearer " + staticTestToken, status: 200},
		{name: "the static token encodes", path: "/default/encode", header: "Bearer " + staticTestToken, status: 200},
		{name: "a token with read on the namespace decodes", header: "Bearer " + iss.token(t, nil), status: 200},
		{name: "an expired token is refused", header: "Bearer " + iss.token(t, func(c map[string]any) {
			c["exp"] = time.Now().Add(-time.Minute).Unix()
		}), status: 401, msg: "token expired"},
		{name: "a token for another audience is refused", header: "Bearer " + iss.token(t, func(c map[string]any) {
			c["aud"] = "some-other-app"
		}), status: 401, msg: "invalid token"},
		{name: "a token from another issuer is refused", header: "Bearer " + iss.token(t, func(c map[string]any) {
			c["iss"] = "https://issuer.example.com"
		}), status: 401},
		{name: "a token signed by an unknown key is refused", header: "Bearer " + iss.sign(t, strangerKey, iss.kid, map[string]any{
			"iss": iss.url, "aud": testAudience, "sub": "mallory", "exp": time.Now().Add(time.Minute).Unix(), "permissions": []string{"temporal-system:admin"},
		}), status: 401},
		{name: "an unsigned token is refused", header: "Bearer " + unsignedToken(iss.url), status: 401},
		{name: "a token for another namespace is refused", header: "Bearer " + iss.token(t, func(c map[string]any) {
			c["permissions"] = []string{"payments:admin"}
		}), status: 403, code: codeForbidden, msg: `does not grant read on namespace "default"`},
		{name: "a token without the permissions claim is refused", header: "Bearer " + iss.token(t, func(c map[string]any) {
			delete(c, "permissions")
		}), status: 403},
		{name: "the worker role does not decode", header: "Bearer " + iss.token(t, func(c map[string]any) {
			c["permissions"] = []string{"default:worker"}
		}), status: 403},
		{name: "read does not encode", path: "/default/encode", header: "Bearer " + iss.token(t, nil), status: 403, msg: "does not grant write"},
		{name: "write encodes", path: "/default/encode", header: "Bearer " + iss.token(t, func(c map[string]any) {
			c["permissions"] = []string{"default:write"}
		}), status: 200},
		{name: "roles are case-insensitive", header: "Bearer " + iss.token(t, func(c map[string]any) {
			c["permissions"] = []string{"default:Read"}
		}), status: 200},
		{name: "a cluster admin decodes any namespace", header: "Bearer " + iss.token(t, func(c map[string]any) {
			c["permissions"] = []string{"temporal-system:admin"}
		}), status: 200},
		{name: "a permissions claim that is not a list is refused", header: "Bearer " + iss.token(t, func(c map[string]any) {
			c["permissions"] = "default:read"
		}), status: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = "/default/decode"
			}
			reqBody := decodeBody
			if strings.HasSuffix(path, "/encode") {
				reqBody = encodeBody
			}
			before := fake.TotalCalls()
			var headers []string
			if tt.header != "" {
				headers = []string{"Authorization", tt.header}
			}
			r := request(t, http.MethodPost, srv.url+path, reqBody, headers...)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.code != "" && r.errBody.Code != tt.code {
				t.Errorf("code %q, want %q", r.errBody.Code, tt.code)
			}
			if tt.msg != "" && !strings.Contains(r.errBody.Message, tt.msg) {
				t.Errorf("message %q does not contain %q", r.errBody.Message, tt.msg)
			}
			if tt.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("401 without a Bearer WWW-Authenticate challenge")
			}
			if tt.status >= 400 && fake.TotalCalls() != before {
				t.Errorf("a refused request reached KMS")
			}
		})
	}
	if logs := srv.logs.String(); strings.Contains(logs, staticTestToken) || strings.Contains(logs, "eyJ") {
		t.Errorf("the access log holds a token:\n%s", logs)
	}
}

// unsignedToken is a JWT with "alg": "none" that claims everything.
func unsignedToken(issuer string) string {
	enc := func(s string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(s))
	}
	claims := fmt.Sprintf(`{"iss":%q,"aud":%q,"sub":"mallory","exp":%d,"permissions":["temporal-system:admin"]}`,
		issuer, testAudience, time.Now().Add(time.Hour).Unix())
	return enc(`{"alg":"none","typ":"JWT"}`) + "." + enc(claims) + "."
}

// TestRequestValidation: what the server refuses about a request from a
// caller it has authenticated, and that it refuses it without asking KMS.
func TestRequestValidation(t *testing.T) {
	ctrl := gomock.NewController(t)
	// No expectations: any KMS call fails the test.
	kms := mocks.NewMockAPI(ctrl)
	srv := startServer(t, kms, Options{
		MaxBodyBytes:      256 << 10,
		AllowedNamespaces: []string{"default", "payments"},
	})
	auth := []string{"Authorization", "Bearer " + staticTestToken}
	valid := body(t, encrypted(t, newKeyARN, "default", 1))

	truncated := encrypted(t, newKeyARN, "default", 1)
	truncated[0].Data = truncated[0].Data[:10]
	foreign := encrypted(t, "arn:aws:kms:us-east-1:444455556666:key/ffffffff-0000-4000-8000-000000000009", "default", 1)
	otherFormat := &commonpb.Payload{Metadata: map[string][]byte{
		"encoding": []byte("binary/encrypted"), "encryption-format": []byte("aes-gcm-v9"),
	}, Data: []byte("x")}

	tests := []struct {
		name    string
		method  string
		path    string
		body    string
		headers []string
		status  int
		code    string
	}{
		{name: "a body over the size limit gets 413", body: `{"payloads":[{"metadata":{"encoding":"` + strings.Repeat("A", 300<<10) + `"}}]}`, status: 413, code: codeTooLarge},
		{name: "malformed JSON gets 400", body: `{"payloads": [`, status: 400, code: codeBadRequest},
		{name: "JSON of the wrong shape gets 400", body: `{"payloads": "all of them"}`, status: 400, code: codeBadRequest},
		{name: "an empty body gets 400", body: "", status: 400, code: codeBadRequest},
		{name: "more payloads than the limit get 413", body: body(t, plain(1001)), status: 413, code: codeTooManyPayloads},
		{name: "a null payload gets 400", body: `{"payloads":[null]}`, status: 400},
		{name: "a truncated envelope gets 400", body: body(t, truncated), status: 400, code: codeMalformedPayload},
		{name: "an unknown encryption format gets 400", body: body(t, []*commonpb.Payload{otherFormat}), status: 400, code: codeMalformedPayload},
		{name: "a payload under a key that is not allowed gets 403", body: body(t, foreign), status: 403, code: codeKeyNotAllowed},
		{name: "a payload of another namespace gets 403", body: body(t, encrypted(t, newKeyARN, "payments", 1)), status: 403, code: codeWrongNamespace},
		{name: "a payload bound to no namespace gets 403", body: body(t, encrypted(t, newKeyARN, "", 1)), status: 403, code: codeWrongNamespace},
		{name: "a request without a namespace gets 400", path: "/decode", body: valid, status: 400, code: codeBadRequest},
		{name: "path and header namespaces that differ get 400", path: "/default/decode", headers: []string{"X-Namespace", "payments"}, body: valid, status: 400},
		{name: "an invalid namespace name gets 400", path: "/decode", headers: []string{"X-Namespace", "../etc"}, body: valid, status: 400},
		{name: "a namespace outside the allow-list gets 403", path: "/staging/decode", body: valid, status: 403, code: codeForbidden},
		{name: "encode is off unless enabled", path: "/default/encode", body: body(t, plain(1)), status: 403, code: codeForbidden},
		{name: "GET on decode gets 405", method: http.MethodGet, status: 405, code: codeMethod},
		{name: "an unknown path gets 404", path: "/default/recode", body: valid, status: 404, code: codeNotFound},
		{name: "a nested path gets 404", path: "/a/b/decode", body: valid, status: 404, code: codeNotFound},
		{name: "unencrypted payloads pass through", body: body(t, plain(3)), status: 200},
		{name: "an empty list decodes to an empty list", body: `{"payloads":[]}`, status: 200},
		{name: "the namespace may come from X-Namespace", path: "/decode", headers: []string{"X-Namespace", "default"}, body: body(t, plain(1)), status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, path := tt.method, tt.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = "/default/decode"
			}
			r := request(t, method, srv.url+path, tt.body, append(append([]string{}, auth...), tt.headers...)...)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.code != "" && r.errBody.Code != tt.code {
				t.Errorf("code %q, want %q (%s)", r.errBody.Code, tt.code, r.errBody.Message)
			}
		})
	}
}

// TestChunkedOversizedBody: a body without Content-Length is cut off at
// the limit too.
func TestChunkedOversizedBody(t *testing.T) {
	srv := startServer(t, mocks.NewMockAPI(gomock.NewController(t)), Options{MaxBodyBytes: 1 << 10})
	req, err := http.NewRequest(http.MethodPost, srv.url+"/default/decode", &slowReader{r: strings.NewReader(body(t, plain(100)))})
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+staticTestToken)
	req.Header.Set("Content-Type", "application/json")
	if r := do(t, req); r.status != 413 {
		t.Fatalf("status %d, want 413", r.status)
	}
}

// slowReader hides its length so the request goes out chunked.
type slowReader struct{ r *strings.Reader }

func (s *slowReader) Read(p []byte) (int, error) { return s.r.Read(p) }

// TestDecode: what a successful decode returns.
func TestDecode(t *testing.T) {
	t.Run("payloads come back as they were before encryption, in order", func(t *testing.T) {
		fake := newFakeKMS(oldKeyARN, newKeyARN)
		srv := startServer(t, fake, Options{})
		in := append(encrypted(t, oldKeyARN, "default", 2), plain(1)...)
		in = append(in, encrypted(t, newKeyARN, "default", 2)...)
		r := request(t, http.MethodPost, srv.url+"/default/decode", body(t, in), "Authorization", "Bearer "+staticTestToken)
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		got := r.payloads(t)
		want := append(append(plain(2), plain(1)...), plain(2)...)
		if len(got) != len(want) {
			t.Fatalf("%d payloads, want %d", len(got), len(want))
		}
		for i := range want {
			if !proto.Equal(got[i], want[i]) {
				t.Errorf("payload %d: %v, want %v", i, got[i], want[i])
			}
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		if cc := r.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q: decrypted data must not be cached", cc)
		}
		// Two data keys (one per master key), one Decrypt each.
		if n := fake.Calls("Decrypt"); n != 2 {
			t.Errorf("%d Decrypt calls, want 2", n)
		}
	})

	t.Run("10,000 payloads within a raised limit cost one Decrypt", func(t *testing.T) {
		fake := newFakeKMS(oldKeyARN, newKeyARN)
		srv := startServer(t, fake, Options{MaxPayloads: 10_000, MaxBodyBytes: 16 << 20})
		in := encrypted(t, newKeyARN, "default", 10_000)
		r := request(t, http.MethodPost, srv.url+"/default/decode", body(t, in), "Authorization", "Bearer "+staticTestToken)
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body[:min(len(r.body), 200)])
		}
		if got := len(r.payloads(t)); got != 10_000 {
			t.Fatalf("%d payloads back", got)
		}
		if n := fake.Calls("Decrypt"); n != 1 {
			t.Errorf("%d Decrypt calls, want 1", n)
		}
	})

	t.Run("10,000 payloads are refused under the default limits, before KMS", func(t *testing.T) {
		srv := startServer(t, mocks.NewMockAPI(gomock.NewController(t)), Options{})
		// Small ones exceed the count limit; encrypted ones, about 600
		// bytes each in JSON, the body limit first.
		for _, tt := range []struct {
			payloads []*commonpb.Payload
			code     string
		}{
			{plain(10_000), codeTooManyPayloads},
			{encrypted(t, newKeyARN, "default", 10_000), codeTooLarge},
		} {
			r := request(t, http.MethodPost, srv.url+"/default/decode", body(t, tt.payloads), "Authorization", "Bearer "+staticTestToken)
			if r.status != 413 || r.errBody.Code != tt.code {
				t.Errorf("status %d %q, want 413 %q", r.status, r.errBody.Code, tt.code)
			}
		}
	})

	t.Run("unbound payloads decode when allowed", func(t *testing.T) {
		api := newFakeKMS(newKeyARN)
		srv := startServer(t, api, Options{Codec: KMSCodec{Codec: newTestCodec(t, api, false), AllowUnboundPayloads: true}})
		r := request(t, http.MethodPost, srv.url+"/default/decode", body(t, encrypted(t, newKeyARN, "", 1)), "Authorization", "Bearer "+staticTestToken)
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})

	t.Run("a payload under a disabled key gets 502 with KMS's reason", func(t *testing.T) {
		fake := newFakeKMS(newKeyARN)
		fake.Disable(newKeyARN)
		srv := startServer(t, fake, Options{})
		r := request(t, http.MethodPost, srv.url+"/default/decode", body(t, encrypted(t, newKeyARN, "default", 1)), "Authorization", "Bearer "+staticTestToken)
		if r.status != 502 || r.errBody.Message != "KMS Decrypt failed: DisabledException" {
			t.Fatalf("status %d %q, want 502 with DisabledException", r.status, r.errBody.Message)
		}
	})

	t.Run("a payload whose wrapped key KMS refuses gets 400, and KMS is asked once", func(t *testing.T) {
		fake := newFakeKMS(newKeyARN)
		srv := startServer(t, fake, Options{})
		in := encrypted(t, newKeyARN, "default", 1)
		dk := in[0].Metadata["encryption-data-key"]
		dk[len(dk)-1] ^= 1
		for range 2 {
			r := request(t, http.MethodPost, srv.url+"/default/decode", body(t, in), "Authorization", "Bearer "+staticTestToken)
			if r.status != 400 || r.errBody.Code != codeMalformedPayload || !strings.Contains(r.errBody.Message, "InvalidCiphertextException") {
				t.Fatalf("status %d %q %q, want 400 %q naming InvalidCiphertextException", r.status, r.errBody.Code, r.errBody.Message, codeMalformedPayload)
			}
		}
		if n := fake.Calls("Decrypt"); n != 1 {
			t.Errorf("%d Decrypt calls for the same refused wrapped key twice, want 1", n)
		}
		if strings.Contains(srv.logs.String(), `"level":"ERROR"`) {
			t.Errorf("a refused payload was logged as a server error:\n%s", srv.logs)
		}
	})

	t.Run("a tampered payload is refused", func(t *testing.T) {
		srv := startServer(t, newFakeKMS(newKeyARN), Options{})
		in := encrypted(t, newKeyARN, "default", 1)
		in[0].Data[len(in[0].Data)-1] ^= 1
		r := request(t, http.MethodPost, srv.url+"/default/decode", body(t, in), "Authorization", "Bearer "+staticTestToken)
		if r.status != 400 || r.errBody.Code != codeMalformedPayload {
			t.Fatalf("status %d %q, want 400 %q", r.status, r.errBody.Code, codeMalformedPayload)
		}
	})
}

// TestEncode: /encode binds payloads to the request's namespace, so they
// decode there and nowhere else.
func TestEncode(t *testing.T) {
	fake := newFakeKMS(oldKeyARN, newKeyARN)
	srv := startServer(t, fake, Options{EnableEncode: true})
	auth := []string{"Authorization", "Bearer " + staticTestToken}
	enc := request(t, http.MethodPost, srv.url+"/encode", body(t, plain(3)), append(auth, "X-Namespace", "payments")...)
	if enc.status != 200 {
		t.Fatalf("encode: status %d: %s", enc.status, enc.body)
	}
	encoded := enc.payloads(t)
	for i, p := range encoded {
		if string(p.Metadata["encoding"]) != "binary/encrypted" {
			t.Fatalf("payload %d was not encrypted", i)
		}
	}
	if r := request(t, http.MethodPost, srv.url+"/payments/decode", enc.payloadsBody(t), auth...); r.status != 200 {
		t.Errorf("decode in payments: status %d: %s", r.status, r.body)
	} else if got := r.payloads(t); !proto.Equal(got[2], plain(3)[2]) {
		t.Errorf("round trip changed the payload: %v", got[2])
	}
	if r := request(t, http.MethodPost, srv.url+"/default/decode", enc.payloadsBody(t), auth...); r.status != 403 {
		t.Errorf("decode in default: status %d, want 403", r.status)
	}
}

func (r *response) payloadsBody(t *testing.T) string {
	return body(t, r.payloads(t))
}

// TestKMSFailures: KMS failing is the server's upstream failing: 502,
// with the AWS error code and nothing more.
func TestKMSFailures(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "access denied", err: kmstest.Error("AccessDeniedException", "User arn:aws:iam::111122223333:role/codec is not authorized"), want: "KMS Decrypt failed: AccessDeniedException"},
		{name: "throttling", err: kmstest.Error("ThrottlingException", "Rate exceeded"), want: "KMS Decrypt failed: ThrottlingException"},
		{name: "a network error", err: fmt.Errorf("dial tcp: connection refused"), want: "KMS Decrypt failed: unknown error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctrl := gomock.NewController(t)
			kms := mocks.NewMockAPI(ctrl)
			kms.EXPECT().Decrypt(gomock.Any(), gomock.Any()).Return(nil, tt.err).Times(1)
			srv := startServer(t, kms, Options{})
			r := request(t, http.MethodPost, srv.url+"/default/decode", body(t, encrypted(t, newKeyARN, "default", 1)), "Authorization", "Bearer "+staticTestToken)
			if r.status != http.StatusBadGateway || r.errBody.Code != codeKMS {
				t.Fatalf("status %d %q, want 502 %q", r.status, r.errBody.Code, codeKMS)
			}
			if r.errBody.Message != tt.want {
				t.Errorf("message %q, want %q", r.errBody.Message, tt.want)
			}
			if !strings.Contains(srv.logs.String(), `"error_code":"kms_error"`) {
				t.Errorf("the failure is not in the log:\n%s", srv.logs)
			}
		})
	}
}

// TestInFlightLimit: beyond --max-in-flight a request gets 503 at once
// instead of queueing behind a slow KMS.
func TestInFlightLimit(t *testing.T) {
	ctrl := gomock.NewController(t)
	kms := mocks.NewMockAPI(ctrl)
	entered, release := make(chan struct{}), make(chan struct{})
	real := newFakeKMS(newKeyARN)
	kms.EXPECT().Decrypt(gomock.Any(), gomock.Any()).DoAndReturn(
		func(ctx context.Context, in *awskms.DecryptInput, opts ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
			close(entered)
			<-release
			return real.Decrypt(ctx, in, opts...)
		}).Times(1)
	srv := startServer(t, kms, Options{MaxInFlight: 1})
	in := body(t, encrypted(t, newKeyARN, "default", 1))

	var wg sync.WaitGroup
	wg.Add(1)
	var first *response
	go func() {
		defer wg.Done()
		first = request(t, http.MethodPost, srv.url+"/default/decode", in, "Authorization", "Bearer "+staticTestToken)
	}()
	<-entered
	second := request(t, http.MethodPost, srv.url+"/default/decode", in, "Authorization", "Bearer "+staticTestToken)
	close(release)
	wg.Wait()
	if second.status != 503 || second.header.Get("Retry-After") == "" {
		t.Errorf("second request: status %d, Retry-After %q; want 503 with Retry-After", second.status, second.header.Get("Retry-After"))
	}
	if first.status != 200 {
		t.Errorf("first request: status %d", first.status)
	}
}

// TestCORS: only configured origins may call from a browser, and the
// headers the Web UI sends are allowed.
func TestCORS(t *testing.T) {
	const ui = "https://temporal.example.com"
	srv := startServer(t, newFakeKMS(newKeyARN), Options{CORSOrigins: []string{ui}})
	creds := startServer(t, newFakeKMS(newKeyARN), Options{CORSOrigins: []string{ui}, CORSAllowCredentials: true})

	preflight := func(url, origin string) *response {
		req, err := http.NewRequest(http.MethodOptions, url+"/default/decode?preserveStorageRefs=true", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,authorization-extras,content-type,x-namespace")
		return do(t, req)
	}
	tests := []struct {
		name        string
		resp        func() *response
		preflight   bool
		allowOrigin string
		allowCreds  string
	}{
		{name: "a preflight from the Web UI is allowed", resp: func() *response { return preflight(srv.url, ui) }, preflight: true, allowOrigin: ui},
		{name: "a preflight from another origin is not", resp: func() *response { return preflight(srv.url, "https://evil.example.net") }, preflight: true},
		{name: "credentials are allowed only when configured", resp: func() *response { return preflight(creds.url, ui) }, preflight: true, allowOrigin: ui, allowCreds: "true"},
		{name: "a decode from the Web UI carries its origin", resp: func() *response {
			return request(t, http.MethodPost, srv.url+"/default/decode?preserveStorageRefs=true", body(t, plain(1)),
				"Origin", ui, "Authorization", "Bearer "+staticTestToken, "Authorization-Extras", "id-token")
		}, allowOrigin: ui},
		{name: "a decode from another origin gets no CORS headers", resp: func() *response {
			return request(t, http.MethodPost, srv.url+"/default/decode", body(t, plain(1)),
				"Origin", "https://evil.example.net", "Authorization", "Bearer "+staticTestToken)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.resp()
			if r.status >= 300 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if got := r.header.Get("Access-Control-Allow-Origin"); got != tt.allowOrigin {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tt.allowOrigin)
			}
			if got := r.header.Get("Access-Control-Allow-Credentials"); got != tt.allowCreds {
				t.Errorf("Access-Control-Allow-Credentials %q, want %q", got, tt.allowCreds)
			}
			if tt.preflight && tt.allowOrigin != "" {
				allowed := strings.ToLower(r.header.Get("Access-Control-Allow-Headers"))
				for _, h := range []string{"authorization", "authorization-extras", "content-type", "x-namespace"} {
					if !strings.Contains(allowed, h) {
						t.Errorf("Access-Control-Allow-Headers %q lacks %s", allowed, h)
					}
				}
			}
		})
	}
}

// TestPreflightsAreLoggedAndCounted: a refused preflight is the trace of a
// page on another origin trying the server, so operators see it.
func TestPreflightsAreLoggedAndCounted(t *testing.T) {
	const ui = "https://temporal.example.com"
	srv := startServer(t, newFakeKMS(newKeyARN), Options{CORSOrigins: []string{ui}})
	for _, origin := range []string{ui, "https://evil.example.net"} {
		req, err := http.NewRequest(http.MethodOptions, srv.url+"/default/decode", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		if r := do(t, req); r.status >= 300 {
			t.Fatalf("preflight from %s: status %d", origin, r.status)
		}
	}
	logs := srv.logs.String()
	for _, want := range []string{
		`"route":"preflight","status":204`,
		`"origin":"https://temporal.example.com","origin_allowed":true`,
		`"origin":"https://evil.example.net","origin_allowed":false`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("access log lacks %s:\n%s", want, logs)
		}
	}
	if n := testutil.ToFloat64(srv.server.metrics.requests.WithLabelValues("preflight", "204")); n != 2 {
		t.Errorf("%v preflights counted, want 2", n)
	}
}

// TestHealthz: probes need no token.
func TestHealthz(t *testing.T) {
	srv := startServer(t, mocks.NewMockAPI(gomock.NewController(t)), Options{})
	if r := request(t, http.MethodGet, srv.url+"/healthz", ""); r.status != 200 || !bytes.Contains(r.body, []byte(`"ok"`)) {
		t.Errorf("GET /healthz: %d %s", r.status, r.body)
	}
	if r := request(t, http.MethodPost, srv.url+"/healthz", ""); r.status != 405 {
		t.Errorf("POST /healthz: %d, want 405", r.status)
	}
}

// TestAccessLog: one structured line per request with namespace, count,
// status and latency, and never a token or payload contents.
func TestAccessLog(t *testing.T) {
	srv := startServer(t, newFakeKMS(newKeyARN), Options{})
	in := encrypted(t, newKeyARN, "default", 3)
	r := request(t, http.MethodPost, srv.url+"/default/decode", body(t, in), "Authorization", "Bearer "+staticTestToken)
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	logs := srv.logs.String()
	for _, want := range []string{`"msg":"request"`, `"route":"decode"`, `"status":200`, `"namespace":"default"`, `"payloads":3`, `"subject":"static-token"`, `"duration_ms":`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	for _, secret := range []string{staticTestToken, b64(plain(3)[0].Data), b64(in[0].Data[:24])} {
		if strings.Contains(logs, secret) {
			t.Errorf("log holds %q:\n%s", secret, logs)
		}
	}
}

// TestMetrics: the codec's counters and the request counters reach
// Prometheus.
func TestMetrics(t *testing.T) {
	srv := startServer(t, newFakeKMS(newKeyARN), Options{})
	request(t, http.MethodPost, srv.url+"/default/decode", body(t, encrypted(t, newKeyARN, "default", 4)), "Authorization", "Bearer "+staticTestToken)
	request(t, http.MethodPost, srv.url+"/default/decode", "{", "Authorization", "Bearer "+staticTestToken)

	reg := srv.metrics
	reg.MustRegister(NewCodecCollector(srv.codec.Stats))
	expected := `
# HELP kmscodec_kms_calls_total KMS calls made, by operation, failed ones included.
# TYPE kmscodec_kms_calls_total counter
kmscodec_kms_calls_total{operation="Decrypt"} 1
kmscodec_kms_calls_total{operation="DescribeKey"} 0
kmscodec_kms_calls_total{operation="GenerateDataKey"} 0
# HELP kmscodec_payloads_total Payloads processed, by operation.
# TYPE kmscodec_payloads_total counter
kmscodec_payloads_total{operation="decode"} 4
kmscodec_payloads_total{operation="encode"} 0
kmscodec_payloads_total{operation="pass_through"} 0
# HELP kmscodec_http_requests_total Codec server requests, by route and status code.
# TYPE kmscodec_http_requests_total counter
kmscodec_http_requests_total{code="200",route="decode"} 1
kmscodec_http_requests_total{code="400",route="decode"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected),
		"kmscodec_kms_calls_total", "kmscodec_payloads_total", "kmscodec_http_requests_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n < 20 {
		t.Errorf("%d metrics gathered (%v)", n, err)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
