package codec_test

// Fuzz targets for the Codec: Decode on arbitrary payloads, and Encode
// followed by Decode on arbitrary payloads and namespaces. FuzzDecode's
// seed corpus in testdata/fuzz/ holds the format's test vectors and edge
// cases (rewrite it with -update-seeds); FuzzEncodeDecodeRoundTrip's
// seeds are in the code. `go test` replays them, `go test -fuzz`
// explores from them.

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpora in testdata/fuzz/ from the test vectors and edge cases")

// envelopeFields are the metadata fields a decoder reads, in the order of
// the bits of FuzzDecode's absent argument.
var envelopeFields = []string{
	envelope.MetadataEncoding,
	envelope.MetadataFormat,
	envelope.MetadataKeyID,
	envelope.MetadataDataKey,
	envelope.MetadataContext,
}

// decodeInput builds the payload a FuzzDecode input describes: the five
// fields a decoder reads (each left out when its bit of absent is set),
// one more metadata entry of any name, and the data.
func decodeInput(encoding, format, keyID, dataKey, contextJSON, data []byte, absent uint8, extraKey string, extraValue []byte) *commonpb.Payload {
	md := map[string][]byte{}
	if extraKey != "" {
		md[extraKey] = extraValue
	}
	for i, value := range [][]byte{encoding, format, keyID, dataKey, contextJSON} {
		if absent&(1<<i) == 0 {
			md[envelopeFields[i]] = value
		} else {
			delete(md, envelopeFields[i])
		}
	}
	return &commonpb.Payload{Metadata: md, Data: data}
}

// addDecodeSeed adds to f's seed corpus the FuzzDecode input that
// describes p.
func addDecodeSeed(f *testing.F, p *commonpb.Payload) {
	a := decodeSeed(p)
	f.Add(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8])
}

// decodeSeed is the FuzzDecode input that describes p.
func decodeSeed(p *commonpb.Payload) []any {
	md := p.GetMetadata()
	var fields [5][]byte
	var absent uint8
	for i, name := range envelopeFields {
		v, ok := md[name]
		if !ok {
			absent |= 1 << i
		}
		fields[i] = v
	}
	extraKey, extraValue := "", []byte(nil)
	for k, v := range md {
		if !slices.Contains(envelopeFields, k) {
			extraKey, extraValue = k, v
		}
	}
	return []any{fields[0], fields[1], fields[2], fields[3], fields[4], p.GetData(), absent, extraKey, extraValue}
}

// allocatedBy returns how many heap bytes f allocates.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// fuzzing reports whether the test binary runs a fuzz target (-fuzz)
// rather than replaying corpora.
func fuzzing() bool {
	fl := flag.Lookup("test.fuzz")
	return fl != nil && fl.Value.String() != ""
}

// FuzzDecode gives Decode arbitrary payloads and checks, against an
// independent reading of the payload with envelope.Parse, that:
//   - it never panics, never modifies its input, and allocates in
//     proportion to the input only;
//   - a payload that is not kms-envelope-v1 passes through as it is;
//   - a malformed payload, one under a key that is not allowed, and one
//     whose context does not parse fail with their typed errors, and
//     make no KMS call at all;
//   - anything else costs at most one Decrypt, and decodes only if it is
//     exactly a payload that was sealed, to exactly what was sealed;
//   - no error repeats the payload's data.
func FuzzDecode(f *testing.F) {
	vectors := loadTestVectors(f)
	fake := kmstest.New()
	seedARN := fake.CreateKey()
	api := &vectorKMS{API: fake, vectors: vectors}
	sealed := maps.Clone(vectors.opens)
	if *updateSeeds {
		seeds := map[string][]any{}
		for name, p := range vectors.named {
			seeds["vector-"+name] = decodeSeed(p)
		}
		for name, p := range decodeEdgeCases(vectors.named["good_basic"]) {
			seeds["edge-"+name] = decodeSeed(p)
		}
		writeSeeds(f, "FuzzDecode", seeds)
	}

	// Payloads sealed by this process's KMS decode too, so the corpus
	// replay also starts from the codec's own output. (testdata/fuzz holds
	// the test vectors and edge cases.) Not when fuzzing: the fuzzer runs
	// seeds in worker processes, whose own sealings (fresh salts and data
	// keys) would not recognise these as sealed.
	writer := newCodec(f, codec.Options{KMS: fake, KeyID: seedARN, Namespace: "fuzz"})
	ownSeeds := []*commonpb.Payload{
		payload("fuzz"),
		{},
		{Metadata: map[string][]byte{"encoding": []byte("binary/plain"), "messageType": {0, 0xff}}, Data: bytes.Repeat([]byte{0x5a}, 300)},
	}
	if fuzzing() {
		ownSeeds = nil
	}
	for _, in := range ownSeeds {
		enc := encode(f, writer, in)[0]
		sealed[authenticatedBytes(enc)] = in
		addDecodeSeed(f, enc)
	}

	f.Fuzz(func(t *testing.T, encoding, format, keyID, dataKey, contextJSON, data []byte, absent uint8, extraKey string, extraValue []byte) {
		p := decodeInput(encoding, format, keyID, dataKey, contextJSON, data, absent, extraKey, extraValue)
		original := proto.Clone(p).(*commonpb.Payload)
		kms := &kmstest.Counter{API: api}
		c, err := codec.New(codec.Options{KMS: kms, KeyID: vectors.keyARN, DecryptKeyIDs: []string{seedARN}})
		if err != nil {
			t.Fatal(err)
		}

		var out []*commonpb.Payload
		allocated := allocatedBy(func() { out, err = c.Decode([]*commonpb.Payload{p}) })
		size := proto.Size(p)
		if bound := 256<<10 + 8*uint64(size); allocated > bound {
			t.Fatalf("Decode allocated %d bytes for a %d-byte payload, over the bound of %d", allocated, size, bound)
		}
		if !proto.Equal(p, original) {
			t.Fatal("Decode modified its input")
		}
		if err != nil {
			if out != nil {
				t.Fatal("Decode returned payloads with an error")
			}
			// Errors name the key ARN or format a payload claims; they
			// never repeat its data.
			named := bytes.Contains(keyID, data) || bytes.Contains(format, data)
			if len(data) >= 16 && !named && strings.Contains(err.Error(), string(data)) {
				t.Fatal("the error repeats the payload's data")
			}
		}
		var retryable *converter.WorkflowTaskFailureError

		env, parseErr := envelope.Parse(original)
		switch {
		case errors.Is(parseErr, envelope.ErrNotEncrypted):
			if err != nil || len(out) != 1 || out[0] != p {
				t.Fatalf("a payload not in this format did not pass through: %v", err)
			}
			if kms.Total() != 0 {
				t.Fatalf("%d KMS calls for a payload not in this format", kms.Total())
			}
			return
		case parseErr != nil:
			for _, sentinel := range []error{codec.ErrMalformedPayload, codec.ErrUnsupportedFormat} {
				if errors.Is(parseErr, sentinel) != errors.Is(err, sentinel) {
					t.Fatalf("Parse says %v, Decode says %v", parseErr, err)
				}
			}
			if kms.Total() != 0 {
				t.Fatalf("%d KMS calls for a structurally invalid payload (%v)", kms.Total(), parseErr)
			}
			if errors.As(err, &retryable) {
				t.Fatal("a malformed payload failed the workflow task: retrying cannot fix it")
			}
			return
		case env.KeyARN != vectors.keyARN && env.KeyARN != seedARN:
			if !errors.Is(err, codec.ErrKeyNotAllowed) || !errors.As(err, &retryable) {
				t.Fatalf("a payload under a key not allowed: got %v, want a retryable ErrKeyNotAllowed", err)
			}
			if kms.Total() != 0 {
				t.Fatalf("%d KMS calls for a payload under a key not allowed", kms.Total())
			}
			return
		}
		if _, ctxErr := env.EncryptionContext(); ctxErr != nil {
			if !errors.Is(err, codec.ErrMalformedPayload) {
				t.Fatalf("context that does not parse: got %v, want ErrMalformedPayload", err)
			}
			if kms.Total() != 0 {
				t.Fatalf("%d KMS calls for a context that does not parse", kms.Total())
			}
			return
		}

		if kms.DecryptCalls.Load() > 1 || kms.GenerateDataKeyCalls.Load() != 0 || kms.DescribeKeyCalls.Load() != 0 {
			t.Fatalf("KMS calls for one payload: %d Decrypt, %d GenerateDataKey, %d DescribeKey; want at most one Decrypt",
				kms.DecryptCalls.Load(), kms.GenerateDataKeyCalls.Load(), kms.DescribeKeyCalls.Load())
		}
		if err != nil {
			var kmsErr *codec.KMSError
			if !errors.Is(err, codec.ErrAuthenticationFailed) && !errors.Is(err, codec.ErrMalformedPayload) && !errors.As(err, &kmsErr) {
				t.Fatalf("Decode failed with an undocumented error: %v", err)
			}
			return
		}
		want, ok := sealed[authenticatedBytes(original)]
		if !ok {
			t.Fatal("Decode accepted a payload that was never sealed: forgery")
		}
		if len(out) != 1 || !proto.Equal(out[0], want) {
			t.Fatal("Decode returned another payload than the one sealed")
		}
	})
}

// roundTripInput builds the payload a FuzzEncodeDecodeRoundTrip input
// describes: metadata names separated by NUL bytes, their values likewise
// (a name without a value gets an empty one), and the data.
func roundTripInput(names string, values, data []byte) *commonpb.Payload {
	p := &commonpb.Payload{Data: data}
	if names == "" {
		return p
	}
	p.Metadata = map[string][]byte{}
	vs := bytes.Split(values, []byte{0})
	for i, name := range strings.Split(names, "\x00") {
		var v []byte
		if i < len(vs) {
			v = vs[i]
		}
		p.Metadata[name] = v
	}
	return p
}

// FuzzEncodeDecodeRoundTrip encodes an arbitrary payload in an arbitrary
// namespace and checks that Encode either fails without returning
// anything (only for input that protobuf or an encryption context cannot
// carry) or gives a kms-envelope-v1 payload that shows none of the input,
// that the writer decodes without a KMS call and a cold reader decodes,
// off the wire, with one Decrypt, both to exactly the input.
func FuzzEncodeDecodeRoundTrip(f *testing.F) {
	f.Add("encoding", []byte("json/plain"), []byte(`{"card":"4111 1111 1111 1111","amount":42}`), "payments")
	f.Add("", []byte(nil), []byte(nil), "")
	f.Add("encoding\x00messageType", []byte("binary/protobuf\x00temporal.api.common.v1.Payload"), bytes.Repeat([]byte{0, 1, 0xfe, 0xff}, 64), "zahlungen-ü")
	f.Add("encoding\x00encryption-format\x00encryption-key-id\x00encryption-data-key", []byte("binary/encrypted\x00kms-envelope-v1\x00arn:aws:kms:us-east-1:111122223333:key/k\x00w"), bytes.Repeat([]byte{7}, 100), "ns")
	f.Add("encoding\x00encryption-key-id", []byte("binary/encrypted\x00sample-key"), bytes.Repeat([]byte{9}, 40), "")
	f.Add("\xff", []byte("not UTF-8 key"), []byte("x"), "ns")
	f.Add("encoding", []byte("json/plain"), []byte(`"x"`), "\xfe not UTF-8")
	f.Add("encoding", []byte("json/plain"), []byte(`"x"`), `quote " backslash \ <html> & `+"\u2028\x01")
	fake := kmstest.New()
	arn := fake.CreateKey()

	f.Fuzz(func(t *testing.T, names string, values, data []byte, namespace string) {
		in := roundTripInput(names, values, data)
		original := proto.Clone(in).(*commonpb.Payload)
		kms := &kmstest.Counter{API: fake}
		c, err := codec.New(codec.Options{KMS: kms, KeyID: arn})
		if err != nil {
			t.Fatal(err)
		}

		enc, err := c.WithNamespace(namespace).Encode([]*commonpb.Payload{in})
		if !proto.Equal(in, original) {
			t.Fatal("Encode modified its input")
		}
		if err != nil {
			if enc != nil {
				t.Fatal("Encode returned payloads with an error")
			}
			if _, marshalErr := proto.Marshal(in); marshalErr == nil && contextFits(namespace) {
				t.Fatalf("Encode failed on a payload and namespace it can carry: %v", err)
			}
			return
		}
		if len(enc) != 1 {
			t.Fatalf("Encode returned %d payloads for 1", len(enc))
		}
		md := enc[0].Metadata
		wantFields := 4
		if namespace != "" {
			wantFields = 5
			ctx, err := mustParse(t, enc[0]).EncryptionContext()
			if err != nil || ctx[codec.NamespaceContextKey] != namespace {
				t.Fatalf("namespace %q not bound into the context: %v (%v)", namespace, ctx, err)
			}
		}
		if len(md) != wantFields || string(md["encoding"]) != "binary/encrypted" || string(md["encryption-format"]) != "kms-envelope-v1" || string(md["encryption-key-id"]) != arn {
			t.Fatalf("encoded metadata has fields %v", slices.Sorted(maps.Keys(md)))
		}
		for _, secret := range append([][]byte{data}, slices.Collect(maps.Values(in.GetMetadata()))...) {
			if len(secret) >= 16 && bytes.Contains(enc[0].Data, secret) {
				t.Fatal("the encoded payload shows part of its input")
			}
		}

		// The writer reads its own payload back without asking KMS.
		out, err := c.Decode(enc)
		if err != nil || !proto.Equal(out[0], in) {
			t.Fatalf("the writer's Decode did not return the input: %v", err)
		}
		if kms.DecryptCalls.Load() != 0 {
			t.Fatalf("%d Decrypt calls reading back its own payload", kms.DecryptCalls.Load())
		}

		// A cold reader gets the payload off the wire and asks KMS once.
		wire, err := proto.Marshal(enc[0])
		if err != nil {
			t.Fatal(err)
		}
		received := &commonpb.Payload{}
		if err := proto.Unmarshal(wire, received); err != nil {
			t.Fatal(err)
		}
		coldKMS := &kmstest.Counter{API: fake}
		reader, err := codec.New(codec.Options{KMS: coldKMS, KeyID: arn})
		if err != nil {
			t.Fatal(err)
		}
		out, err = reader.Decode([]*commonpb.Payload{received})
		if err != nil || !proto.Equal(out[0], in) {
			t.Fatalf("a cold reader's Decode did not return the input: %v", err)
		}
		if coldKMS.DecryptCalls.Load() != 1 || coldKMS.Total() != 1 {
			t.Fatalf("a cold reader made %d KMS calls (%d Decrypt), want one Decrypt", coldKMS.Total(), coldKMS.DecryptCalls.Load())
		}
	})
}

// contextFits reports whether namespace can be an encryption context: valid
// UTF-8 and, as JSON, within the format's limit.
func contextFits(namespace string) bool {
	if !utf8.ValidString(namespace) {
		return false
	}
	b, err := envelope.MarshalContext(map[string]string{codec.NamespaceContextKey: namespace})
	return err == nil && len(b) <= envelope.MaxContextSize
}

func mustParse(t *testing.T, p *commonpb.Payload) *envelope.Envelope {
	t.Helper()
	e, err := envelope.Parse(p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// decodeEdgeCases are payloads that test what the codec adds to the
// format: the allow-list, KMS refusing a wrapped key, metadata the
// envelope does not cover, and payloads of other codecs.
func decodeEdgeCases(basic *commonpb.Payload) map[string]*commonpb.Payload {
	with := func(change func(p *commonpb.Payload)) *commonpb.Payload {
		p := proto.Clone(basic).(*commonpb.Payload)
		change(p)
		return p
	}
	set := func(name string, value []byte) *commonpb.Payload {
		return with(func(p *commonpb.Payload) { p.Metadata[name] = value })
	}
	return map[string]*commonpb.Payload{
		"empty":                    {},
		"sample-codec":             {Metadata: map[string][]byte{"encoding": []byte("binary/encrypted"), "encryption-key-id": []byte("sample-key")}, Data: basic.Data},
		"key-is-an-alias":          set("encryption-key-id", []byte("alias/temporal")),
		"key-of-another-account":   set("encryption-key-id", []byte("arn:aws:kms:us-east-1:999999999999:key/1234abcd-12ab-34cd-56ef-1234567890ab")),
		"wrapped-key-kms-refuses":  set("encryption-data-key", bytes.Repeat([]byte{0xbb}, 184)),
		"context-escaped-same-map": set("encryption-context", []byte(`{"app":"billing","temporal-namespace":"p\u0061yments"}`)),
		"context-null":             set("encryption-context", []byte("null")),
		"context-empty-object":     set("encryption-context", []byte("{}")),
		"extra-metadata":           set("x-not-covered", []byte("ignored and dropped")),
		"data-without-ciphertext":  with(func(p *commonpb.Payload) { p.Data = p.Data[:envelope.Overhead] }),
	}
}

// writeSeeds replaces the generated seed files of a fuzz target, those
// named seed-*, with seeds; other files, such as crashers kept as
// regression tests, stay.
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
