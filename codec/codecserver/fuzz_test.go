package codecserver

// Fuzz target of the codec server's handling of /decode and /encode
// request bodies. Its seed corpus in testdata/fuzz/ holds real encrypted
// payloads (the command's fixtures, under the fake KMS's keys) and edge
// cases; rewrite it with -update-seeds. `go test` replays it, `go test
// -fuzz` explores from it.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpus in testdata/fuzz/ from the fixtures and edge cases")

// allocatedBy returns how many heap bytes f allocates.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// writeSeeds replaces the seed files of a fuzz target, those named
// seed-*, with seeds; other files, such as crashers kept as regression
// tests, stay.
func writeSeeds(tb testing.TB, target string, seeds map[string][]any) {
	tb.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
	for _, f := range old {
		os.Remove(f)
	}
	for name, values := range seeds {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		for _, v := range values {
			switch v := v.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			case string:
				fmt.Fprintf(&b, "string(%q)\n", v)
			case uint8:
				fmt.Fprintf(&b, "uint8(%d)\n", v)
			default:
				tb.Fatalf("seed value of type %T", v)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(b.String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// readFixture reads one of the command's fixtures, which the seeds are
// made from.
func readFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "cmd", "kmscodec", "testdata", "fixtures", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Limits of the fuzzed server, small so that the fuzzer reaches them.
const (
	fuzzMaxBody     = 64 << 10
	fuzzMaxPayloads = 16
)

// Bits of FuzzServeDecode's mode argument.
const (
	modeEncode          = 1 << iota // POST /encode instead of /decode
	modeNamespaceInPath             // /{namespace}/decode instead of the X-Namespace header
)

// serveSeeds are FuzzServeDecode's seeds: mode, namespace, body.
func serveSeeds(t testing.TB) map[string][]any {
	t.Helper()
	tampered := encrypted(t, newKeyARN, "default", 1)
	tampered[0].Metadata[envelope.MetadataDataKey][len(tampered[0].Metadata[envelope.MetadataDataKey])-1] ^= 1
	altered := encrypted(t, newKeyARN, "default", 1)
	altered[0].Data[len(altered[0].Data)-1] ^= 1
	mixed := append(encrypted(t, oldKeyARN, "default", 2), plain(2)...)
	return map[string][]any{
		"fixture-input":               {uint8(0), "default", readFixture(t, "input.json")},
		"fixture-input-in-path":       {uint8(modeNamespaceInPath), "default", readFixture(t, "input.json")},
		"fixture-input-other-ns":      {uint8(0), "payments", readFixture(t, "input.json")},
		"encrypted-and-plain":         {uint8(0), "default", []byte(body(t, mixed))},
		"unbound":                     {uint8(0), "default", []byte(body(t, encrypted(t, newKeyARN, "", 1)))},
		"wrapped-key-kms-refuses":     {uint8(0), "default", []byte(body(t, tampered))},
		"altered-ciphertext":          {uint8(0), "default", []byte(body(t, altered))},
		"key-not-allowed":             {uint8(0), "default", []byte(body(t, encrypted(t, "arn:aws:kms:us-east-1:999999999999:key/0a1b2c3d-0000-4000-8000-000000000009", "default", 1)))},
		"encode-plain":                {uint8(modeEncode), "payments", readFixture(t, "payloads.plain.json")},
		"encode-in-path":              {uint8(modeEncode | modeNamespaceInPath), "default", []byte(body(t, plain(3)))},
		"empty-list":                  {uint8(0), "default", []byte(`{"payloads":[]}`)},
		"null-payload":                {uint8(0), "default", []byte(`{"payloads":[null]}`)},
		"encrypted-without-format":    {uint8(0), "default", []byte(`{"payloads":[{"metadata":{"encoding":"YmluYXJ5L2VuY3J5cHRlZA=="},"data":"AAAA"}]}`)},
		"not-base64":                  {uint8(0), "default", []byte(`{"payloads":[{"metadata":{"encoding":"not base64!"}}]}`)},
		"unknown-fields":              {uint8(0), "default", []byte(`{"payloads":[],"extra":{"nested":[1,2,3]}}`)},
		"not-json":                    {uint8(0), "default", []byte(`payloads`)},
		"empty-body":                  {uint8(0), "default", []byte(nil)},
		"invalid-namespace":           {uint8(0), "../etc", []byte(`{"payloads":[]}`)},
		"deeply-nested-unknown-field": {uint8(0), "default", []byte(`{"x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`)},
	}
}

// FuzzServeDecode sends arbitrary bodies to the codec server's /decode
// and /encode, in a namespace given by header or path, and checks that:
//   - it never panics, and allocates in proportion to the body only;
//   - it answers 200 or 4xx: the in-memory KMS never fails on its own,
//     so whatever fails (a wrapped key that KMS refuses included) is the
//     request's fault;
//   - a body over the limit gets 413; a body that is not {"payloads":
//     [...]} in protobuf JSON, or a namespace that is not valid, a 4xx
//     without any KMS call;
//   - a request holding a payload marked kms-envelope-v1 that does not
//     parse, that is bound to another namespace or to none, or that names
//     a key not allowed, gets a 4xx; /decode asks KMS only about
//     well-formed payloads under allowed keys, once per distinct wrapped
//     key, and nothing else;
//   - a 200 carries as many payloads as were sent: decoded, passed
//     through unchanged, or (from /encode) encrypted, bound to the
//     namespace and decoding back to the input;
//   - an error answer is JSON with a code and message, and never repeats
//     the payload data sent.
func FuzzServeDecode(f *testing.F) {
	if *updateSeeds {
		writeSeeds(f, "FuzzServeDecode", serveSeeds(f))
	}
	fake := newFakeKMS(oldKeyARN, newKeyARN)
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))

	f.Fuzz(func(t *testing.T, mode uint8, namespace string, reqBody []byte) {
		kms := &kmstest.Counter{API: fake}
		c, err := codec.New(codec.Options{KMS: kms, KeyID: newKeyARN, DecryptKeyIDs: []string{oldKeyARN}, DecryptCacheSize: 64})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := New(Options{
			Codec:        KMSCodec{Codec: c},
			StaticToken:  staticTestToken,
			MaxBodyBytes: fuzzMaxBody,
			MaxPayloads:  fuzzMaxPayloads,
			EnableEncode: true,
			Logger:       discard,
		})
		if err != nil {
			t.Fatal(err)
		}

		op := "decode"
		if mode&modeEncode != 0 {
			op = "encode"
		}
		target := "http://codec.test/" + op
		if mode&modeNamespaceInPath != 0 {
			target = "http://codec.test/" + namespace + "/" + op
		}
		req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(reqBody))
		if err != nil {
			return // not a URL a client could send
		}
		req.Header.Set("Authorization", "Bearer "+staticTestToken)
		req.Header.Set("Content-Type", "application/json")
		if mode&modeNamespaceInPath == 0 {
			req.Header.Set("X-Namespace", namespace)
		}
		w := httptest.NewRecorder()
		allocated := allocatedBy(func() { srv.ServeHTTP(w, req) })
		if bound := 1<<20 + 32*uint64(len(reqBody)); allocated > bound {
			t.Fatalf("a %d-byte request allocated %d bytes, over the bound of %d", len(reqBody), allocated, bound)
		}
		status, respBody := w.Code, w.Body.Bytes()

		// What the server must make of the request, read independently.
		var msg commonpb.Payloads
		parseErr := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(reqBody, &msg)
		validNS := namespacePattern.MatchString(namespace) && (mode&modeNamespaceInPath == 0 || !strings.Contains(namespace, "/"))

		// The fake KMS never fails on its own: whatever goes wrong is
		// the request's fault.
		if status != http.StatusOK && (status < 400 || status >= 500) {
			t.Fatalf("status %d: %s", status, respBody)
		}
		if status != http.StatusOK {
			var e apiError
			if err := json.Unmarshal(respBody, &e); err != nil || e.Code == "" || e.Message == "" {
				t.Fatalf("status %d with an error body that is not {code, message}: %q", status, respBody)
			}
			for _, p := range msg.GetPayloads() {
				if d := p.GetData(); len(d) >= 16 && (bytes.Contains(respBody, d) || bytes.Contains(respBody, []byte(base64.StdEncoding.EncodeToString(d)))) {
					t.Fatal("the error answer repeats payload data")
				}
			}
		}
		if validNS && len(reqBody) > fuzzMaxBody && status != http.StatusRequestEntityTooLarge {
			t.Fatalf("a %d-byte body got %d, want 413", len(reqBody), status)
		}
		if parseErr != nil || !validNS || len(msg.Payloads) > fuzzMaxPayloads || hasNil(msg.Payloads) {
			if status < 400 || status >= 500 {
				t.Fatalf("status %d for a request that is not valid (body: %v, namespace valid: %v)", status, parseErr, validNS)
			}
			if kms.Total() != 0 {
				t.Fatalf("%d KMS calls for a request that is not valid", kms.Total())
			}
			return
		}

		if op == "encode" {
			checkEncodeAnswer(t, c, namespace, msg.Payloads, status, respBody, kms)
			return
		}
		refused, wrappedKeys := decodeRequestShape(msg.Payloads, namespace)
		// KMS is asked only about well-formed payloads under allowed keys
		// (those before a refused one in the batch, at most), once each.
		if kms.GenerateDataKeyCalls.Load() != 0 || kms.DescribeKeyCalls.Load() != 0 || kms.DecryptCalls.Load() > int64(wrappedKeys) {
			t.Fatalf("%d GenerateDataKey, %d DescribeKey and %d Decrypt calls to decode %d distinct well-formed wrapped keys",
				kms.GenerateDataKeyCalls.Load(), kms.DescribeKeyCalls.Load(), kms.DecryptCalls.Load(), wrappedKeys)
		}
		if refused != "" {
			if status < 400 || status >= 500 {
				t.Fatalf("status %d for a request with %s", status, refused)
			}
			return
		}
		if status != http.StatusOK {
			return
		}
		out := answerPayloads(t, respBody, len(msg.Payloads))
		for i, p := range msg.Payloads {
			if _, err := envelope.Parse(p); errors.Is(err, envelope.ErrNotEncrypted) && !proto.Equal(out[i], p) {
				t.Fatalf("payload %d is not encrypted but did not pass through unchanged", i+1)
			}
		}
	})
}

func hasNil(ps []*commonpb.Payload) bool {
	for _, p := range ps {
		if p == nil {
			return true
		}
	}
	return false
}

// decodeRequestShape says why the server must refuse to decode ps in
// namespace ("" if nothing in their structure says it must), and how many
// distinct wrapped keys of well-formed payloads, bound to namespace and
// under allowed keys, there are: all KMS may be asked about.
func decodeRequestShape(ps []*commonpb.Payload, namespace string) (refused string, wrappedKeys int) {
	seen := map[string]bool{}
	refuse := func(why string) {
		if refused == "" {
			refused = why
		}
	}
	for _, p := range ps {
		env, err := envelope.Parse(p)
		if errors.Is(err, envelope.ErrNotEncrypted) {
			continue
		}
		if err != nil {
			refuse("a payload that does not parse")
			continue
		}
		ctx, err := env.EncryptionContext()
		switch {
		case err != nil:
			refuse("a payload whose context does not parse")
		case ctx[codec.NamespaceContextKey] != namespace:
			refuse("a payload bound to another namespace, or none")
		case env.KeyARN != newKeyARN && env.KeyARN != oldKeyARN:
			refuse("a payload under a key that is not allowed")
		default:
			seen[string(env.KeyIdentity())] = true
		}
	}
	return refused, len(seen)
}

// answerPayloads parses a 200 answer, which must hold n payloads.
func answerPayloads(t *testing.T, respBody []byte, n int) []*commonpb.Payload {
	t.Helper()
	var got commonpb.Payloads
	if err := protojson.Unmarshal(respBody, &got); err != nil {
		t.Fatalf("a 200 answer that is not payloads: %v", err)
	}
	if len(got.Payloads) != n {
		t.Fatalf("%d payloads in the answer for %d sent", len(got.Payloads), n)
	}
	return got.Payloads
}

// checkEncodeAnswer checks /encode's answer to in: encrypted payloads,
// bound to namespace, that decode back to in.
func checkEncodeAnswer(t *testing.T, c *codec.Codec, namespace string, in []*commonpb.Payload, status int, respBody []byte, kms *kmstest.Counter) {
	t.Helper()
	if kms.DecryptCalls.Load() != 0 {
		t.Fatalf("%d Decrypt calls to encode", kms.DecryptCalls.Load())
	}
	if status != http.StatusOK {
		return
	}
	out := answerPayloads(t, respBody, len(in))
	for i, p := range out {
		env, err := envelope.Parse(p)
		if err != nil {
			t.Fatalf("encoded payload %d is not kms-envelope-v1: %v", i+1, err)
		}
		if ctx, err := env.EncryptionContext(); err != nil || ctx[codec.NamespaceContextKey] != namespace {
			t.Fatalf("encoded payload %d is not bound to the namespace", i+1)
		}
	}
	back, err := c.Decode(out)
	if err != nil {
		t.Fatalf("the encoded payloads do not decode: %v", err)
	}
	for i := range in {
		if !proto.Equal(back[i], in[i]) {
			t.Fatalf("payload %d did not decode back to what was encoded", i+1)
		}
	}
}
