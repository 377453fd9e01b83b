package codec_test

// Migrating from the static-key codec of Temporal's encryption samples
// with workflows in flight: Options.Legacy and LegacyStaticKeyDecoder.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// samplesEncoder writes payloads in the layout of Temporal's encryption
// samples, as the description in LegacyStaticKeyDecoder's documentation
// gives it: encoding binary/encrypted, encryption-key-id, and data = a
// random 12-byte nonce then AES-256-GCM of the marshalled payload, no
// additional data. The Java sample also writes encryption-cipher.
type samplesEncoder struct {
	keyID string
	key   []byte
	java  bool
}

func newSamplesEncoder(t testing.TB, keyID string, java bool) samplesEncoder {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return samplesEncoder{keyID: keyID, key: key, java: java}
}

func (s samplesEncoder) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	block, err := aes.NewCipher(s.key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plaintext, err := proto.Marshal(p)
		if err != nil {
			return nil, err
		}
		nonce := make([]byte, 12)
		if _, err := rand.Read(nonce); err != nil {
			return nil, err
		}
		md := map[string][]byte{"encoding": []byte("binary/encrypted"), "encryption-key-id": []byte(s.keyID)}
		if s.java {
			md["encryption-cipher"] = []byte("AES/GCM/NoPadding")
		}
		out[i] = &commonpb.Payload{Metadata: md, Data: gcm.Seal(nonce, nonce, plaintext, nil)}
	}
	return out, nil
}

// Decode is not used: the tests read with LegacyStaticKeyDecoder.
func (s samplesEncoder) Decode([]*commonpb.Payload) ([]*commonpb.Payload, error) {
	return nil, errors.New("samplesEncoder only encodes")
}

func (s samplesEncoder) mustEncode(t testing.TB, in ...*commonpb.Payload) []*commonpb.Payload {
	t.Helper()
	out, err := s.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newLegacyDecoder(t testing.TB, encoders ...samplesEncoder) *codec.LegacyStaticKeyDecoder {
	t.Helper()
	keys := map[string][]byte{}
	for _, e := range encoders {
		keys[e.keyID] = e.key
	}
	d, err := codec.NewLegacyStaticKeyDecoder(keys)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// migrationDataConverter is the data converter the migration recipe in
// the README and docs/SECURITY.md tells users to build while moving from
// the samples' codec to kmscodec: the KMS codec alone, with the old
// codec's keys as its Legacy decoder.
func migrationDataConverter(t *testing.T, kms *kmstest.KMS, keyID string, old samplesEncoder) converter.DataConverter {
	t.Helper()
	c := newCodec(t, codec.Options{KMS: kms, KeyID: keyID, Legacy: newLegacyDecoder(t, old)})
	return codec.NewDataConverter(c, codec.DataConverterOptions{})
}

// The point of migrating is to retire the static key: every payload
// written during the migration must be readable by kmscodec alone, once
// the old key is gone, and what the old codec wrote must be readable
// during it.
func TestTheMigrationRecipeWritesPayloadsThatKMSCodecAloneReads(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	old := newSamplesEncoder(t, "sample-key", false)
	during := migrationDataConverter(t, fake, arn, old)
	written, err := during.ToPayloads("card 4111 1111 1111 1111")
	if err != nil {
		t.Fatal(err)
	}

	after := codec.NewDataConverter(newCodec(t, codec.Options{KMS: fake, KeyID: arn}), codec.DataConverterOptions{})
	var got string
	if err := after.FromPayloads(written, &got); err != nil || got != "card 4111 1111 1111 1111" {
		t.Fatalf("with the static key retired, a payload written during the migration reads %q, %v: it was sealed under the static key inside the KMS envelope", got, err)
	}

	before, err := converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), old).ToPayloads("written before")
	if err != nil {
		t.Fatal(err)
	}
	if err := during.FromPayloads(before, &got); err != nil || got != "written before" {
		t.Fatalf("during the migration, a payload the old codec wrote reads %q, %v", got, err)
	}
}

// Why the recipe is not a codec chain: the SDK encodes through a chain
// last codec first, so with the old codec after the KMS codec every new
// payload is sealed under the static key and then wrapped by KMS, and the
// static key can never be retired.
func TestAChainEndingInTheStaticKeyCodecSealsEveryNewPayloadUnderTheStaticKey(t *testing.T) {
	fake := kmstest.New()
	kmsCodec := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey()})
	old := newSamplesEncoder(t, "sample-key", false)
	chain := converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), kmsCodec, old)
	written, err := chain.ToPayloads("x")
	if err != nil {
		t.Fatal(err)
	}
	inner := mustDecode(t, kmsCodec, written.Payloads)[0]
	if string(inner.Metadata["encoding"]) != "binary/encrypted" || string(inner.Metadata["encryption-key-id"]) != "sample-key" {
		t.Fatalf("inside the KMS envelope: metadata %q, want the static key's sealing", inner.Metadata)
	}
}

func TestLegacyStaticKeyDecoderOpensTheSamplesLayout(t *testing.T) {
	goSample := newSamplesEncoder(t, "go-sample-key", false)
	javaSample := newSamplesEncoder(t, "java-sample-key", true)
	d := newLegacyDecoder(t, goSample, javaSample)
	for _, tc := range []struct {
		name string
		enc  samplesEncoder
	}{{"Go, TypeScript and Python samples", goSample}, {"Java sample", javaSample}} {
		t.Run(tc.name, func(t *testing.T) {
			in := payloads(3)
			in = append(in, &commonpb.Payload{}) // an empty payload seals to nonce and tag alone
			out, err := d.Decode(tc.enc.mustEncode(t, in...))
			if err != nil {
				t.Fatal(err)
			}
			if !equal(out, in) {
				t.Fatal("decoded payloads differ from those encoded")
			}
		})
	}
}

func TestLegacyStaticKeyDecoderPassesEveryOtherPayloadThroughUntouched(t *testing.T) {
	fake := kmstest.New()
	kmsPayload := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey()}), payload("kms"))[0]
	otherFormat := &commonpb.Payload{Metadata: map[string][]byte{
		"encoding": []byte("binary/encrypted"), "encryption-format": []byte("some-other-v1"), "encryption-key-id": []byte("sample-key"),
	}, Data: []byte("opaque")}
	in := []*commonpb.Payload{payload("plain"), kmsPayload, otherFormat, {}}
	out, err := newLegacyDecoder(t, newSamplesEncoder(t, "sample-key", false)).Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if out[i] != in[i] {
			t.Errorf("payload %d was not passed through untouched", i+1)
		}
	}
}

func TestLegacyStaticKeyDecoderFailsWithATypedError(t *testing.T) {
	old := newSamplesEncoder(t, "sample-key", true)
	d := newLegacyDecoder(t, old)
	good := func() *commonpb.Payload { return old.mustEncode(t, payload("secret value"))[0] }
	notAPayload := good()
	{
		block, _ := aes.NewCipher(old.key)
		gcm, _ := cipher.NewGCM(block)
		nonce := make([]byte, 12)
		notAPayload.Data = gcm.Seal(nonce, nonce, []byte{0xff, 0xff, 0xff}, nil)
	}
	tests := []struct {
		name    string
		change  func(p *commonpb.Payload)
		want    error
		mention string
	}{
		{"unknown key ID", func(p *commonpb.Payload) { p.Metadata["encryption-key-id"] = []byte("retired-key") }, codec.ErrLegacyKeyUnknown, `"retired-key"`},
		{"no key ID", func(p *commonpb.Payload) { delete(p.Metadata, "encryption-key-id") }, codec.ErrMalformedPayload, "encryption-key-id"},
		{"a flipped ciphertext bit", func(p *commonpb.Payload) { p.Data[len(p.Data)-20] ^= 1 }, codec.ErrAuthenticationFailed, `"sample-key"`},
		{"a flipped nonce bit", func(p *commonpb.Payload) { p.Data[0] ^= 1 }, codec.ErrAuthenticationFailed, ""},
		{"shorter than nonce and tag", func(p *commonpb.Payload) { p.Data = p.Data[:27] }, codec.ErrMalformedPayload, "27 bytes"},
		{"another cipher", func(p *commonpb.Payload) { p.Metadata["encryption-cipher"] = []byte("AES/CBC/PKCS5Padding") }, codec.ErrUnsupportedFormat, "AES/CBC"},
		{"a key ID of a megabyte", func(p *commonpb.Payload) { p.Metadata["encryption-key-id"] = bytes.Repeat([]byte("k"), 1<<20) }, codec.ErrLegacyKeyUnknown, "..."},
		{"a sealed value that is not a Payload", func(p *commonpb.Payload) { p.Data = notAPayload.Data }, codec.ErrMalformedPayload, "not a protobuf Payload"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := good()
			tc.change(p)
			out, err := d.Decode([]*commonpb.Payload{payload("fine"), p})
			if out != nil || !errors.Is(err, tc.want) {
				t.Fatalf("got %d payloads and %v, want %v", len(out), err, tc.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.mention) || !strings.Contains(msg, "payload 2 of 2") {
				t.Errorf("error %q does not say %q and which payload", msg, tc.mention)
			}
			if len(msg) > 1024 {
				t.Errorf("error is %d bytes long", len(msg))
			}
			if strings.Contains(msg, "secret value") || strings.Contains(msg, base64.StdEncoding.EncodeToString(old.key)) || strings.Contains(msg, string(old.key)) {
				t.Errorf("error repeats payload data or key material: %q", msg)
			}
		})
	}
}

func TestNewLegacyStaticKeyDecoderAcceptsOnlyAES256Keys(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	for name, keys := range map[string]map[string][]byte{
		"no keys":          {},
		"an empty key ID":  {"": key},
		"a 16-byte key":    {"short": key[:16]},
		"a 33-byte key":    {"long": append(bytes.Clone(key), 0)},
		"one bad among ok": {"ok": key, "bad": key[:31]},
	} {
		if d, err := codec.NewLegacyStaticKeyDecoder(keys); err == nil || d != nil {
			t.Errorf("%s: accepted", name)
		}
	}
	keys := map[string][]byte{"ok": bytes.Clone(key)}
	d, err := codec.NewLegacyStaticKeyDecoder(keys)
	if err != nil {
		t.Fatal(err)
	}
	// The decoder keeps no reference to the caller's map or key.
	p := samplesEncoder{keyID: "ok", key: key}.mustEncode(t, payload("x"))
	keys["ok"][0] ^= 1
	delete(keys, "ok")
	if _, err := d.Decode(p); err != nil {
		t.Fatalf("changing the map after construction changed the decoder: %v", err)
	}
}

func TestLegacyStaticKeyDecoderNeverEncodes(t *testing.T) {
	d := newLegacyDecoder(t, newSamplesEncoder(t, "sample-key", false))
	if out, err := d.Encode(payloads(1)); err == nil || out != nil {
		t.Fatalf("Encode returned %d payloads and %v", len(out), err)
	}
}

// With a Legacy decoder the codec reads a batch mixing what the old codec
// wrote, what it wrote itself and plain payloads, and writes nothing but
// kms-envelope-v1.
func TestACodecWithALegacyDecoderReadsEveryKindOfPayloadAndWritesOnlyEnvelopes(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	goSample := newSamplesEncoder(t, "go-key", false)
	javaSample := newSamplesEncoder(t, "java-key", true)
	c := newCodec(t, codec.Options{KMS: fake, KeyID: arn, Legacy: newLegacyDecoder(t, goSample, javaSample)})
	in := payloads(4)
	batch := []*commonpb.Payload{
		goSample.mustEncode(t, in[0])[0],
		encode(t, c, in[1])[0],
		in[2],
		javaSample.mustEncode(t, in[3])[0],
	}
	if out := mustDecode(t, c, batch); !equal(out, in) {
		t.Fatal("the mixed batch did not decode to its inputs")
	}
	for i, p := range encode(t, c, in...) {
		if string(p.Metadata["encryption-format"]) != "kms-envelope-v1" {
			t.Fatalf("payload %d was written as %q", i+1, p.Metadata)
		}
	}
	if s := c.Stats(); s.PayloadsDecoded != 1 {
		t.Fatalf("stats %+v: want 1 payload decrypted by the codec itself", s)
	}
}

// Legacy payloads need no KMS call and no allow-list entry, and a batch
// that fails on a legacy payload costs no KMS call either: legacy
// payloads are decoded before KMS is asked for anything.
func TestLegacyPayloadsCostNoKMSCallEvenInAFailingBatch(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	fake.SetAlias("alias/temporal", arn)
	writer := newCodec(t, codec.Options{KMS: fake, KeyID: arn})
	kmsPayload := encode(t, writer, payload("kms"))[0]
	old := newSamplesEncoder(t, "sample-key", false)
	retired := newSamplesEncoder(t, "retired-key", false)

	counter := &kmstest.Counter{API: fake}
	// An alias as KeyID: the allow-list check would need DescribeKey.
	c := newCodec(t, codec.Options{KMS: counter, KeyID: "alias/temporal", Legacy: newLegacyDecoder(t, old)})
	if out := mustDecode(t, c, old.mustEncode(t, payloads(3)...)); !equal(out, payloads(3)) {
		t.Fatal("legacy payloads did not decode")
	}
	if n := counter.Total(); n != 0 {
		t.Fatalf("%d KMS calls for legacy payloads alone, want 0", n)
	}
	batch := []*commonpb.Payload{kmsPayload, retired.mustEncode(t, payload("old"))[0]}
	out, err := c.Decode(batch)
	if out != nil || !errors.Is(err, codec.ErrLegacyKeyUnknown) || !errorNamesPayload(err, 2, 2) {
		t.Fatalf("got %d payloads and %v, want ErrLegacyKeyUnknown at payload 2 of 2", len(out), err)
	}
	if n := counter.DecryptCalls.Load(); n != 0 {
		t.Fatalf("%d Decrypt calls for a batch refused for its legacy payload, want 0", n)
	}
}

// A legacy key missing from a worker is an operator's mistake, fixed by
// deploying the key: the workflow task is retried rather than the
// workflow failed, as for a KMS key missing from the allow-list. An
// altered legacy payload is not retried.
func TestAnUnknownLegacyKeyFailsTheWorkflowTaskNotTheWorkflow(t *testing.T) {
	fake := kmstest.New()
	old := newSamplesEncoder(t, "sample-key", false)
	c := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey(), Legacy: newLegacyDecoder(t, newSamplesEncoder(t, "another-key", false))})
	_, err := c.Decode(old.mustEncode(t, payload("x")))
	var retry *converter.WorkflowTaskFailureError
	if !errors.Is(err, codec.ErrLegacyKeyUnknown) || !errors.As(err, &retry) || !strings.Contains(err.Error(), `"sample-key"`) {
		t.Fatalf("got %v, want a WorkflowTaskFailureError wrapping ErrLegacyKeyUnknown naming the key ID", err)
	}
	if kind := codec.ErrorKind(err); kind != codec.KindKeyNotAllowed || !errors.Is(err, codec.ErrKeyNotAllowed) {
		t.Fatalf("kind %v, want key_not_allowed: a key missing from the configuration", kind)
	}
	if n := strings.Count(err.Error(), "kmscodec:"); n != 1 {
		t.Fatalf("%q says kmscodec: %d times", err, n)
	}

	c = newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey(), Legacy: newLegacyDecoder(t, old)})
	altered := old.mustEncode(t, payload("x"))
	altered[0].Data[20] ^= 1
	_, err = c.Decode(altered)
	if !errors.Is(err, codec.ErrAuthenticationFailed) || errors.As(err, &retry) {
		t.Fatalf("got %v, want ErrAuthenticationFailed and no task retry", err)
	}
}

// RejectUnencrypted with a Legacy decoder: a legacy payload was
// encrypted, so it is accepted; a payload the decoder hands back
// unchanged (plain, or in a layout it does not know) is rejected.
func TestRejectUnencryptedAcceptsLegacyPayloadsAndStillRejectsPlainOnes(t *testing.T) {
	fake := kmstest.New()
	old := newSamplesEncoder(t, "sample-key", true)
	c := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey(), RejectUnencrypted: true, Legacy: newLegacyDecoder(t, old)})
	if out := mustDecode(t, c, old.mustEncode(t, payload("old"))); !equal(out, []*commonpb.Payload{payload("old")}) {
		t.Fatal("a legacy payload did not decode")
	}
	for name, p := range map[string]*commonpb.Payload{
		"plain":                 payload("plain"),
		"unknown to the legacy": {Metadata: map[string][]byte{"encoding": []byte("binary/snappy")}, Data: []byte("x")},
	} {
		batch := append(old.mustEncode(t, payload("old")), p)
		if out, err := c.Decode(batch); out != nil || !errors.Is(err, codec.ErrUnencryptedPayload) || !errorNamesPayload(err, 2, 2) {
			t.Errorf("%s: got %d payloads and %v, want ErrUnencryptedPayload at payload 2 of 2", name, len(out), err)
		}
	}
}

// A Legacy codec that breaks its contract fails the batch clearly.
func TestALegacyCodecReturningTheWrongNumberOfPayloadsFailsTheBatch(t *testing.T) {
	fake := kmstest.New()
	for name, legacy := range map[string]converter.PayloadCodec{
		"none":  brokenLegacy{},
		"two":   brokenLegacy{payload("a"), payload("b")},
		"a nil": brokenLegacy{nil},
	} {
		c := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey(), Legacy: legacy})
		if out, err := c.Decode(payloads(1)); out != nil || err == nil {
			t.Errorf("%s: got %d payloads and %v", name, len(out), err)
		}
	}
}

type brokenLegacy []*commonpb.Payload

func (b brokenLegacy) Encode(p []*commonpb.Payload) ([]*commonpb.Payload, error) { return p, nil }
func (b brokenLegacy) Decode([]*commonpb.Payload) ([]*commonpb.Payload, error) {
	return b, nil
}

func writeKeyFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "legacy-keys.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadLegacyKeysReadsAJSONObjectOfBase64Keys(t *testing.T) {
	a, b := bytes.Repeat([]byte{0xa}, 32), bytes.Repeat([]byte{0xb}, 32)
	content := `{"key-a": "` + base64.StdEncoding.EncodeToString(a) + `", "key-b": "` + base64.StdEncoding.EncodeToString(b) + `"}`
	for _, mode := range []os.FileMode{0o600, 0o640, 0o400} {
		keys, err := codec.LoadLegacyKeys(writeKeyFile(t, content, mode))
		if err != nil {
			t.Fatalf("mode %04o: %v", mode, err)
		}
		if len(keys) != 2 || !bytes.Equal(keys["key-a"], a) || !bytes.Equal(keys["key-b"], b) {
			t.Fatalf("mode %04o: loaded %d keys, not those written", mode, len(keys))
		}
	}
}

func TestLoadLegacyKeysRefusesBadFilesWithoutRepeatingKeys(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))
	tests := []struct {
		name, content string
		mode          os.FileMode
		mention       string
	}{
		{"world-readable", `{"k": "` + key + `"}`, 0o644, "0644"},
		{"world-writable", `{"k": "` + key + `"}`, 0o602, "0602"},
		{"not JSON", `k=` + key, 0o600, "not a JSON object"},
		{"not an object of strings", `{"k": 7}`, 0o600, "not a JSON object"},
		{"no keys", `{}`, 0o600, "no keys"},
		{"not base64", `{"k": "` + key[:10] + `!"}`, 0o600, `"k" is not standard base64`},
		{"a 16-byte key", `{"k": "` + short + `"}`, 0o600, `"k" is 16 bytes`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := codec.LoadLegacyKeys(writeKeyFile(t, tc.content, tc.mode))
			if err == nil || keys != nil {
				t.Fatalf("loaded %d keys", len(keys))
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not say %q", err, tc.mention)
			}
			if strings.Contains(err.Error(), key[:10]) || strings.Contains(err.Error(), short[:10]) {
				t.Errorf("error repeats key material: %q", err)
			}
		})
	}
	if _, err := codec.LoadLegacyKeys(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := codec.LoadLegacyKeys(t.TempDir()); err == nil {
		t.Error("a directory was accepted")
	}
}

// Any PayloadCodec can be the Legacy decoder: here another
// implementation of the samples' codec, as a user may already have.
func TestAnyPayloadCodecCanBeTheLegacyDecoder(t *testing.T) {
	fake := kmstest.New()
	sample := newSampleCodec(t, "sample-key")
	history, err := sample.Encode(payloads(2))
	if err != nil {
		t.Fatal(err)
	}
	c := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey(), Legacy: sample, RejectUnencrypted: true})
	if out := mustDecode(t, c, history); !equal(out, payloads(2)) {
		t.Fatal("the legacy payloads did not decode")
	}
	if _, err := c.Decode([]*commonpb.Payload{payload("plain")}); !errors.Is(err, codec.ErrUnencryptedPayload) {
		t.Fatalf("a plain payload the legacy codec passed through: %v, want ErrUnencryptedPayload", err)
	}
}
