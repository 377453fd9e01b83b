package envelope

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

var update = flag.Bool("update", false, "rewrite the test vectors in testdata/")

// vector is one file of testdata/, as docs/FORMAT.md describes it.
type vector struct {
	Description       string            `json:"description"`
	DataKey           string            `json:"data_key"`
	KeyARN            string            `json:"key_arn,omitempty"`
	WrappedKey        string            `json:"wrapped_key,omitempty"`
	EncryptionContext map[string]string `json:"encryption_context,omitempty"`
	Salt              string            `json:"salt,omitempty"`
	Input             json.RawMessage   `json:"input,omitempty"`
	PayloadKey        string            `json:"payload_key,omitempty"`
	Commitment        string            `json:"commitment,omitempty"`
	AAD               string            `json:"aad,omitempty"`
	Plaintext         string            `json:"plaintext,omitempty"`
	Sealed            json.RawMessage   `json:"sealed"`
	Error             string            `json:"error,omitempty"`
}

// The errors a vector can name, as docs/FORMAT.md spells them.
var vectorErrors = map[string]error{
	"not-encrypted":      ErrNotEncrypted,
	"unsupported-format": ErrUnsupportedFormat,
	"malformed":          ErrMalformed,
	"authentication":     ErrAuthentication,
}

// TestVectors checks every file in testdata/ the way any implementation
// of the format should: good_* vectors open to their input and seal
// byte for byte to their sealed payload, fail_* vectors fail with the
// named error, pass_* vectors are not this format's to open.
func TestVectors(t *testing.T) {
	if *update {
		writeVectors(t)
	}
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) < 20 {
		t.Fatalf("want at least 20 vectors in testdata/, found %d (%v)", len(files), err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			var v vector
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
			sealed := payloadFromJSON(t, v.Sealed)
			switch {
			case strings.HasPrefix(name, "good_"):
				checkGood(t, v, sealed)
			case strings.HasPrefix(name, "fail_"), strings.HasPrefix(name, "pass_"):
				want, ok := vectorErrors[v.Error]
				if !ok {
					t.Fatalf("unknown error %q", v.Error)
				}
				_, err := openVector(mustHex(t, v.DataKey), sealed)
				if !errors.Is(err, want) {
					t.Fatalf("got error %v, want %s", err, v.Error)
				}
			default:
				t.Fatalf("vector name must start with good_, fail_ or pass_")
			}
		})
	}
}

// openVector does what a decoder does with a payload: parse, read the
// context that KMS would be given, open.
func openVector(dataKey []byte, p *commonpb.Payload) (*commonpb.Payload, error) {
	e, err := Parse(p)
	if err != nil {
		return nil, err
	}
	if _, err := e.EncryptionContext(); err != nil {
		return nil, err
	}
	return e.Open(dataKey)
}

func checkGood(t *testing.T, v vector, sealed *commonpb.Payload) {
	t.Helper()
	dataKey := mustHex(t, v.DataKey)
	input := payloadFromJSON(t, v.Input)
	e, err := Parse(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if e.KeyARN != v.KeyARN || !bytes.Equal(e.WrappedKey, mustHex(t, v.WrappedKey)) {
		t.Errorf("header: got %s %x, want %s %s", e.KeyARN, e.WrappedKey, v.KeyARN, v.WrappedKey)
	}
	ctx, err := e.EncryptionContext()
	if err != nil || !maps.Equal(ctx, v.EncryptionContext) {
		t.Errorf("context: got %v (%v), want %v", ctx, err, v.EncryptionContext)
	}
	opened, err := e.Open(dataKey)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(opened, input) {
		t.Errorf("opened %v, want %v", opened, input)
	}
	k, err := NewKey(dataKey, Header{KeyARN: v.KeyARN, WrappedKey: mustHex(t, v.WrappedKey), EncryptionContext: v.EncryptionContext})
	if err != nil {
		t.Fatal(err)
	}
	resealed, err := k.Seal(input, bytes.NewReader(mustHex(t, v.Salt)))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(resealed, sealed) {
		t.Errorf("sealing the input with the vector's salt gave\n%v\nwant\n%v", resealed, sealed)
	}
	if got := hex.EncodeToString([]byte(e.KeyIdentity())); got != v.AAD {
		t.Errorf("aad %s, want %s", got, v.AAD)
	}
}

func payloadFromJSON(t testing.TB, raw json.RawMessage) *commonpb.Payload {
	t.Helper()
	p := &commonpb.Payload{}
	if err := protojson.Unmarshal(raw, p); err != nil {
		t.Fatalf("payload %s: %v", raw, err)
	}
	return p
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Fixed inputs of the vectors. The wrapped key stands in for an AWS
// CiphertextBlob: the format treats it as opaque bytes.
var (
	vectorDataKey    = seq(0x00, 32)
	vectorSalt       = seq(0x40, 32)
	vectorKeyARN     = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	vectorOtherARN   = "arn:aws:kms:us-east-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"
	vectorWrappedKey = pseudoRandom("wrapped data key", 184)
	vectorContext    = map[string]string{"temporal-namespace": "payments", "app": "billing"}
	vectorInput      = &commonpb.Payload{
		Metadata: map[string][]byte{"encoding": []byte("json/plain")},
		Data:     []byte(`{"card":"4111 1111 1111 1111","amount":42}`),
	}
)

func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// pseudoRandom returns n reproducible bytes that look random.
func pseudoRandom(seed string, n int) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		h := sha256.Sum256([]byte(seed + string(rune('a'+i))))
		out = append(out, h[:]...)
	}
	return out[:n]
}

// writeVectors regenerates testdata/ from the fixed inputs above.
func writeVectors(t *testing.T) {
	t.Helper()
	old, _ := filepath.Glob("testdata/*.json")
	for _, f := range old {
		os.Remove(f)
	}
	type good struct {
		name, description string
		ctx               map[string]string
		input             *commonpb.Payload
	}
	goods := []good{
		{"good_basic", "A JSON payload with an encryption context naming the namespace.", vectorContext, vectorInput},
		{"good_no_context", "No encryption context: the encryption-context field is absent and its AAD length is zero.", nil, vectorInput},
		{"good_empty_payload", "A payload with no metadata and no data still round-trips.", vectorContext, &commonpb.Payload{}},
		{"good_binary_metadata", "Several metadata fields, one of them binary, are preserved.", vectorContext, &commonpb.Payload{
			Metadata: map[string][]byte{"encoding": []byte("binary/plain"), "messageType": []byte("example.v1.Card"), "x-bin": {0, 1, 2, 0xff}},
			Data:     seq(0x80, 100),
		}},
		{"good_unicode_context", "Context values outside ASCII are written as UTF-8, not escaped; HTML characters are not escaped.", map[string]string{"temporal-namespace": "zahlungen-ü", "team": "a<b>&c"}, vectorInput},
		{"good_escaped_context", "A context whose keys and values need escapes: quote and backslash as \\\" and \\\\, the five control characters with short escapes as \\b \\f \\n \\r \\t, other control characters as \\u00 and lower-case hex; the slash, DEL, U+2028, U+2029 and all non-ASCII characters as themselves. Keys sort by UTF-8 bytes: a supplementary-plane character after U+FFFD.", escapedContext, vectorInput},
	}
	var basic *commonpb.Payload
	for _, g := range goods {
		k, err := NewKey(vectorDataKey, Header{KeyARN: vectorKeyARN, WrappedKey: vectorWrappedKey, EncryptionContext: g.ctx})
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := k.Seal(g.input, bytes.NewReader(vectorSalt))
		if err != nil {
			t.Fatal(err)
		}
		_, commitment, err := derive(vectorDataKey, vectorSalt)
		if err != nil {
			t.Fatal(err)
		}
		payloadKey := deriveForVector(t)
		plaintext, _ := marshalAppend(nil, g.input, payloadSize(g.input))
		saveVector(t, g.name, vector{
			Description:       g.description,
			DataKey:           hex.EncodeToString(vectorDataKey),
			KeyARN:            vectorKeyARN,
			WrappedKey:        hex.EncodeToString(vectorWrappedKey),
			EncryptionContext: g.ctx,
			Salt:              hex.EncodeToString(vectorSalt),
			Input:             marshalPayload(t, g.input),
			PayloadKey:        hex.EncodeToString(payloadKey),
			Commitment:        hex.EncodeToString(commitment[:]),
			AAD:               hex.EncodeToString([]byte(k.Identity())),
			Plaintext:         hex.EncodeToString(plaintext),
			Sealed:            marshalPayload(t, sealed),
		})
		if g.name == "good_basic" {
			basic = sealed
		}
	}

	// Each failing vector is good_basic with one thing changed.
	type bad struct {
		name, description, err string
		change                 func(p *commonpb.Payload)
	}
	flip := func(i int) func(p *commonpb.Payload) {
		return func(p *commonpb.Payload) { p.Data[i] ^= 0x01 }
	}
	setMeta := func(k string, v []byte) func(p *commonpb.Payload) {
		return func(p *commonpb.Payload) { p.Metadata[k] = v }
	}
	bads := []bad{
		{"fail_flipped_salt", "One bit of the salt is flipped.", "authentication", flip(0)},
		{"fail_flipped_commitment", "One bit of the commitment is flipped.", "authentication", flip(SaltSize + 5)},
		{"fail_flipped_ciphertext", "One bit of the AES-GCM ciphertext is flipped.", "authentication", flip(Overhead)},
		{"fail_flipped_tag", "One bit of the AES-GCM tag (the last 16 bytes) is flipped.", "authentication", func(p *commonpb.Payload) { p.Data[len(p.Data)-1] ^= 0x80 }},
		{"fail_other_key_arn", "The key ARN names another key: the AAD no longer matches.", "authentication", setMeta(MetadataKeyID, []byte(vectorOtherARN))},
		{"fail_flipped_wrapped_key", "One bit of the wrapped data key is flipped: the AAD no longer matches.", "authentication", func(p *commonpb.Payload) {
			w := bytes.Clone(p.Metadata[MetadataDataKey])
			w[10] ^= 0x01
			p.Metadata[MetadataDataKey] = w
		}},
		{"fail_changed_context", "The namespace in the context is changed (same keys, same length).", "authentication", setMeta(MetadataContext, []byte(`{"app":"billing","temporal-namespace":"paymentz"}`))},
		{"fail_removed_context", "The encryption-context field is removed.", "authentication", func(p *commonpb.Payload) { delete(p.Metadata, MetadataContext) }},
		{"fail_truncated_data", "The data is shorter than salt, commitment and tag together.", "malformed", func(p *commonpb.Payload) { p.Data = p.Data[:Overhead-1] }},
		{"fail_truncated_ciphertext", "The last byte of the tag is cut off.", "authentication", func(p *commonpb.Payload) { p.Data = p.Data[:len(p.Data)-1] }},
		{"fail_empty_data", "The data is empty.", "malformed", func(p *commonpb.Payload) { p.Data = nil }},
		{"fail_missing_key_arn", "The encryption-key-id field is missing.", "malformed", func(p *commonpb.Payload) { delete(p.Metadata, MetadataKeyID) }},
		{"fail_missing_data_key", "The encryption-data-key field is missing.", "malformed", func(p *commonpb.Payload) { delete(p.Metadata, MetadataDataKey) }},
		{"fail_empty_context", "The encryption-context field is present but empty.", "malformed", setMeta(MetadataContext, []byte{})},
		{"fail_context_not_json", "The encryption context is not JSON.", "malformed", setMeta(MetadataContext, []byte(`temporal-namespace=payments`))},
		{"fail_context_not_strings", "The encryption context has a value that is not a string.", "malformed", setMeta(MetadataContext, []byte(`{"app":1}`))},
		{"fail_context_array", "The encryption context is a JSON array.", "malformed", setMeta(MetadataContext, []byte(`["app","billing"]`))},
		{"fail_oversized_key_arn", "The key ARN is over 2048 bytes.", "malformed", setMeta(MetadataKeyID, bytes.Repeat([]byte("a"), MaxKeyARNSize+1))},
		{"fail_oversized_data_key", "The wrapped data key is over 4096 bytes.", "malformed", setMeta(MetadataDataKey, bytes.Repeat([]byte{7}, MaxWrappedKeySize+1))},
		{"fail_oversized_context", "The encryption context is over 8192 bytes.", "malformed", setMeta(MetadataContext, []byte(`{"a":"`+strings.Repeat("b", MaxContextSize)+`"}`))},
		{"fail_unknown_format", "encryption-format names a version this format is not.", "unsupported-format", setMeta(MetadataFormat, []byte("kms-envelope-v2"))},
		{"fail_empty_format", "encryption-format is present but empty.", "unsupported-format", setMeta(MetadataFormat, []byte{})},
		{"pass_plain_json", "A json/plain payload is not encrypted: pass it through.", "not-encrypted", func(p *commonpb.Payload) {
			p.Metadata = map[string][]byte{"encoding": []byte("json/plain")}
			p.Data = []byte(`"hello"`)
		}},
		{"pass_other_codec", "binary/encrypted without encryption-format, as other codecs write it: not this format's, pass it through.", "not-encrypted", func(p *commonpb.Payload) {
			p.Metadata = map[string][]byte{"encoding": []byte("binary/encrypted"), "encryption-key-id": []byte("test-key")}
		}},
		{"pass_no_encoding", "A payload with encryption-format but no encoding field is not encrypted.", "not-encrypted", func(p *commonpb.Payload) { delete(p.Metadata, MetadataEncoding) }},
	}
	for _, n := range nonCanonicalContexts {
		saveVector(t, n.name, vector{
			Description: n.description + " The payload is otherwise authentic: it was sealed with this context in its AAD, so only the canonical check rejects it.",
			DataKey:     hex.EncodeToString(vectorDataKey),
			Sealed:      marshalPayload(t, sealWithContextJSON(t, []byte(n.context))),
			Error:       "malformed",
		})
	}
	for _, b := range bads {
		p := proto.Clone(basic).(*commonpb.Payload)
		p.Data = bytes.Clone(p.Data)
		b.change(p)
		saveVector(t, b.name, vector{
			Description: b.description,
			DataKey:     hex.EncodeToString(vectorDataKey),
			Sealed:      marshalPayload(t, p),
			Error:       b.err,
		})
	}
}

// escapedContext is the context of good_escaped_context.
var escapedContext = map[string]string{
	"temporal-namespace": "payments",
	"note":               "say \"hi\" \\ a/b \b\f\n\r\t \x00\x01\x1f \x7f ü € \u2028\u2029 😀",
	"\ufffd":             "replacement character",
	"😀":                  "supplementary plane",
}

// nonCanonicalContexts are encryption contexts that parse to a JSON object
// of strings but are not in the canonical encoding. Each becomes a fail_
// vector.
var nonCanonicalContexts = []struct{ name, description, context string }{
	{"fail_reordered_context", "The context's keys are not sorted.", `{"temporal-namespace":"payments","app":"billing"}`},
	{"fail_context_duplicate_key", "The context names temporal-namespace twice: parsers differ in which value wins.", `{"app":"billing","temporal-namespace":"orders","temporal-namespace":"payments"}`},
	{"fail_context_whitespace", "The context has white space between tokens.", `{"app": "billing", "temporal-namespace": "payments"}`},
	{"fail_context_trailing_newline", "The context ends in a newline, as a JSON encoder writing a stream adds.", "{\"app\":\"billing\",\"temporal-namespace\":\"payments\"}\n"},
	{"fail_context_invalid_utf8", "A context value holds the byte 0xff, which is not UTF-8.", "{\"app\":\"bill\xffing\",\"temporal-namespace\":\"payments\"}"},
	{"fail_context_escaped_letter", "A letter is escaped: \\u0061 for a.", `{"app":"billing","temporal-namespace":"p\u0061yments"}`},
	{"fail_context_escaped_slash", "The slash is escaped as \\/.", `{"app":"a\/b","temporal-namespace":"payments"}`},
	{"fail_context_escaped_non_ascii", "A non-ASCII character is escaped: \\u00fc for ü.", `{"app":"billing","temporal-namespace":"zahlungen-\u00fc"}`},
	{"fail_context_escaped_line_separator", "U+2028 is escaped as \\u2028, as Go's encoding/json writes it.", `{"app":"a\u2028b","temporal-namespace":"payments"}`},
	{"fail_context_long_escape_for_newline", "A newline is escaped as \\u000a instead of \\n.", `{"app":"a\u000ab","temporal-namespace":"payments"}`},
	{"fail_context_upper_case_hex", "A control character is escaped with upper-case hex digits, \\u001F.", `{"app":"a\u001Fb","temporal-namespace":"payments"}`},
	{"fail_context_empty_object", "The context is the empty object: an empty context is written by leaving the field out.", `{}`},
}

// sealWithContextJSON seals vectorInput under the vectors' data key with
// contextJSON as the encryption-context field, exactly as given: what an
// encoder that does not write the canonical encoding would produce.
func sealWithContextJSON(t *testing.T, contextJSON []byte) *commonpb.Payload {
	t.Helper()
	k := &Key{dataKey: vectorDataKey, keyARN: []byte(vectorKeyARN), wrappedKey: vectorWrappedKey, contextJSON: contextJSON}
	k.identity = additionalData(k.keyARN, k.wrappedKey, k.contextJSON)
	k.aad = []byte(k.identity)
	sealed, err := k.Seal(vectorInput, bytes.NewReader(vectorSalt))
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

// deriveForVector recomputes the payload key of the vectors, which derive
// does not return, to publish it as an intermediate value.
func deriveForVector(t *testing.T) []byte {
	t.Helper()
	prk, err := hkdf.Extract(sha256.New, vectorDataKey, vectorSalt)
	if err != nil {
		t.Fatal(err)
	}
	k, err := hkdf.Expand(sha256.New, prk, infoPayloadKey, 32)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func marshalPayload(t *testing.T, p *commonpb.Payload) json.RawMessage {
	t.Helper()
	b, err := protojson.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		t.Fatal(err)
	}
	return compact.Bytes()
}

func saveVector(t *testing.T, name string, v vector) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", name+".json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
