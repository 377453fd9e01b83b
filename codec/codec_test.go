package codec_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/golang/mock/gomock"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
	"github.com/temporal-kms/kmscodec/mocks"
)

func newCodec(t testing.TB, opts codec.Options) *codec.Codec {
	t.Helper()
	c, err := codec.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func payload(s string) *commonpb.Payload {
	return &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"` + s + `"`)}
}

func payloads(n int) []*commonpb.Payload {
	out := make([]*commonpb.Payload, n)
	for i := range out {
		out[i] = payload(fmt.Sprintf("value %d", i))
	}
	return out
}

func encode(t testing.TB, c *codec.Codec, in ...*commonpb.Payload) []*commonpb.Payload {
	t.Helper()
	out, err := c.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustDecode(t testing.TB, c *codec.Codec, in []*commonpb.Payload) []*commonpb.Payload {
	t.Helper()
	out, err := c.Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equal(a, b []*commonpb.Payload) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestEncodeThenDecodeReturnsTheInput(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	fake.SetAlias("alias/temporal", arn)
	for _, keyID := range []string{arn, "alias/temporal", arn[strings.LastIndex(arn, "/")+1:], "arn:aws:kms:us-east-1:111122223333:alias/temporal"} {
		t.Run(keyID, func(t *testing.T) {
			c := newCodec(t, codec.Options{KMS: fake, KeyID: keyID})
			in := payloads(5)
			enc := encode(t, c, in...)
			for _, p := range enc {
				md := p.Metadata
				if string(md["encoding"]) != "binary/encrypted" || string(md["encryption-format"]) != "kms-envelope-v1" || string(md["encryption-key-id"]) != arn {
					t.Fatalf("metadata %q", md)
				}
				if strings.Contains(string(p.Data), "value") {
					t.Fatal("plaintext visible in the encoded payload")
				}
			}
			if out := mustDecode(t, c, enc); !equal(in, out) {
				t.Fatal("round trip changed the payloads")
			}
		})
	}
}

func TestTenThousandPayloadsCostOneKMSCallEachWay(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	writer := newCodec(t, codec.Options{KMS: fake, KeyID: arn})
	in := payloads(10_000)
	enc := encode(t, writer, in...)
	if n := fake.Calls("GenerateDataKey"); n != 1 {
		t.Fatalf("%d GenerateDataKey calls for 10,000 payloads, want 1", n)
	}
	mustDecode(t, writer, enc)
	if n := fake.Calls("Decrypt"); n != 0 {
		t.Fatalf("%d Decrypt calls reading back its own payloads, want 0", n)
	}
	reader := newCodec(t, codec.Options{KMS: fake, KeyID: arn})
	if out := mustDecode(t, reader, enc); !equal(in, out) {
		t.Fatal("round trip changed the payloads")
	}
	if n := fake.Calls("Decrypt"); n != 1 {
		t.Fatalf("%d Decrypt calls for 10,000 payloads on a cold codec, want 1", n)
	}
	s := reader.Stats()
	if s.DecryptCalls != 1 || s.DecryptCacheMisses != 1 || s.DecryptCacheHits != 9_999 || s.PayloadsDecoded != 10_000 {
		t.Fatalf("stats %+v", s)
	}
}

func TestMaxPayloadsPerDataKeyOneGivesEachPayloadItsOwnDataKey(t *testing.T) {
	fake := kmstest.New()
	c := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey(), MaxPayloadsPerDataKey: 1})
	enc := encode(t, c, payloads(20)...)
	seen := map[string]bool{}
	for _, p := range enc {
		seen[string(p.Metadata["encryption-data-key"])] = true
	}
	if len(seen) != 20 || fake.Calls("GenerateDataKey") != 20 {
		t.Fatalf("%d distinct data keys, %d calls, want 20", len(seen), fake.Calls("GenerateDataKey"))
	}
}

func TestDataKeyIsReplacedAfterMaxAge(t *testing.T) {
	fake := kmstest.New()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey(), DataKeyMaxAge: time.Minute, Clock: clock})
	encode(t, c, payload("a"))
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	encode(t, c, payload("b"))
	if n := fake.Calls("GenerateDataKey"); n != 2 {
		t.Fatalf("%d GenerateDataKey calls, want 2", n)
	}
}

func TestNamespaceIsBoundIntoTheEncryptionContext(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	c := newCodec(t, codec.Options{KMS: fake, KeyID: arn, EncryptionContext: map[string]string{"app": "billing"}, Namespace: "default-ns"})
	contextOf := func(p *commonpb.Payload) string { return string(p.Metadata["encryption-context"]) }

	if got := contextOf(encode(t, c, payload("x"))[0]); got != `{"app":"billing","temporal-namespace":"default-ns"}` {
		t.Errorf("Options.Namespace: context %s", got)
	}
	wf := c.WithSerializationContext(converter.WorkflowSerializationContext{Namespace: "ns1", WorkflowID: "w"})
	p1, err := wf.Encode([]*commonpb.Payload{payload("x")})
	if err != nil {
		t.Fatal(err)
	}
	if got := contextOf(p1[0]); got != `{"app":"billing","temporal-namespace":"ns1"}` {
		t.Errorf("workflow context: %s", got)
	}
	act := c.WithSerializationContext(converter.ActivitySerializationContext{Namespace: "ns2"})
	p2, _ := act.Encode([]*commonpb.Payload{payload("x")})
	if got := contextOf(p2[0]); got != `{"app":"billing","temporal-namespace":"ns2"}` {
		t.Errorf("activity context: %s", got)
	}
	// Decoding needs nothing from the serialization context.
	if _, err := c.WithNamespace("other").Decode(append(p1, p2...)); err != nil {
		t.Fatal(err)
	}
	// Namespaces get data keys of their own: a KMS key policy can tell them apart.
	if fake.Calls("GenerateDataKey") != 3 {
		t.Errorf("%d GenerateDataKey calls, want one per namespace (3)", fake.Calls("GenerateDataKey"))
	}
}

func TestRequireSameNamespaceRefusesAnotherNamespacesPayloadsWithoutKMS(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	writer := newCodec(t, codec.Options{KMS: fake, KeyID: arn})
	fromNS1 := encode(t, writer.WithNamespace("ns1"), payload("ns1 secret"))
	unbound := encode(t, writer, payload("no namespace"))

	reader := newCodec(t, codec.Options{KMS: fake, KeyID: arn, RequireSameNamespace: true})
	before := fake.TotalCalls()
	_, err := reader.WithNamespace("ns2").Decode(fromNS1)
	if !errors.Is(err, codec.ErrNamespaceMismatch) {
		t.Fatalf("ns2 decoding an ns1 payload: %v, want ErrNamespaceMismatch", err)
	}
	var retry *converter.WorkflowTaskFailureError
	if !errors.As(err, &retry) {
		t.Errorf("mismatch does not fail the task for retry: %T", err)
	}
	if fake.TotalCalls() != before {
		t.Errorf("%d KMS calls for a refused payload", fake.TotalCalls()-before)
	}
	for name, c := range map[string]converter.PayloadCodec{
		"same namespace":   reader.WithNamespace("ns1"),
		"unbound reader":   reader,
		"serialization ns": reader.WithSerializationContext(converter.WorkflowSerializationContext{Namespace: "ns1"}),
	} {
		if _, err := c.Decode(fromNS1); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := reader.WithNamespace("ns2").Decode(unbound); err != nil {
		t.Errorf("a payload naming no namespace: %v", err)
	}
}

func TestNoNamespaceMeansNoContextField(t *testing.T) {
	fake := kmstest.New()
	c := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey()})
	if _, ok := encode(t, c, payload("x"))[0].Metadata["encryption-context"]; ok {
		t.Fatal("encryption-context present with an empty context")
	}
	if c.WithSerializationContext(converter.NexusSerializationContext{Service: "s"}) != c {
		t.Fatal("a context without a namespace changed the codec")
	}
}

func TestRotationNeedsTheOldKeyInTheAllowList(t *testing.T) {
	fake := kmstest.New()
	a, b := fake.CreateKey(), fake.CreateKey()
	fake.SetAlias("alias/temporal", a)
	old := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: "alias/temporal"}), payload("under A"))

	fake.SetAlias("alias/temporal", b)
	rotated := newCodec(t, codec.Options{KMS: fake, KeyID: "alias/temporal", DecryptKeyIDs: []string{a}})
	fresh := encode(t, rotated, payload("under B"))
	if got := string(fresh[0].Metadata["encryption-key-id"]); got != b {
		t.Fatalf("new payload names %s, want B %s", got, b)
	}
	if out := mustDecode(t, rotated, append(old, fresh...)); string(out[0].Data) != `"under A"` || string(out[1].Data) != `"under B"` {
		t.Fatal("rotated codec did not decode both keys' payloads")
	}

	strict := newCodec(t, codec.Options{KMS: fake, KeyID: "alias/temporal"})
	mustDecode(t, strict, fresh) // learns the alias's current key
	decrypts := fake.Calls("Decrypt")
	_, err := strict.Decode(old)
	if !errors.Is(err, codec.ErrKeyNotAllowed) {
		t.Fatalf("got %v, want ErrKeyNotAllowed", err)
	}
	var retry *converter.WorkflowTaskFailureError
	if !errors.As(err, &retry) {
		t.Fatal("a disallowed key should fail the workflow task (retryable once the allow-list is fixed), not the workflow")
	}
	if fake.Calls("Decrypt") != decrypts {
		t.Fatal("a KMS call was made for a disallowed key")
	}
}

func TestABatchRefusedForOnePayloadCostsNoKMSCall(t *testing.T) {
	fake := kmstest.New()
	a, b := fake.CreateKey(), fake.CreateKey()
	valid := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: a}), payload("first"), payload("second"))
	disallowed := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: b}), payload("under B"))
	malformed := proto.Clone(valid[0]).(*commonpb.Payload)
	malformed.Data = malformed.Data[:10]

	for name, bad := range map[string]*commonpb.Payload{"disallowed key": disallowed[0], "malformed": malformed} {
		t.Run(name, func(t *testing.T) {
			reader := newCodec(t, codec.Options{KMS: fake, KeyID: a})
			before := fake.TotalCalls()
			if _, err := reader.Decode(append(slices.Clone(valid), bad)); err == nil {
				t.Fatal("the batch decoded")
			}
			if n := fake.TotalCalls() - before; n != 0 {
				t.Errorf("%d KMS calls for a batch refused before decryption", n)
			}
		})
	}
}

func TestAWorkerReplayingHistoryDecodesItsOwnKeyWithoutEncodingFirst(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	fake.SetAlias("alias/temporal", arn)
	enc := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: arn}), payload("x"))
	replayer := newCodec(t, codec.Options{KMS: fake, KeyID: "alias/temporal"})
	mustDecode(t, replayer, enc)
	if s := replayer.Stats(); s.DescribeKeyCalls != 1 || s.DecryptCalls != 1 || s.GenerateDataKeyCalls != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestUnencryptedPayloadsPassThroughUnlessRejected(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	plain := []*commonpb.Payload{payload("plain"), {Metadata: map[string][]byte{"encoding": []byte("binary/encrypted"), "encryption-key-id": []byte("sample-key")}, Data: []byte{1, 2, 3}}}
	c := newCodec(t, codec.Options{KMS: fake, KeyID: arn})
	if out := mustDecode(t, c, plain); !equal(out, plain) {
		t.Fatal("pass-through changed the payloads")
	}
	if s := c.Stats(); s.PayloadsPassedThrough != 2 || s.PayloadsDecoded != 0 {
		t.Fatalf("stats %+v", s)
	}
	strict := newCodec(t, codec.Options{KMS: fake, KeyID: arn, RejectUnencrypted: true})
	if _, err := strict.Decode(plain[:1]); !errors.Is(err, codec.ErrUnencryptedPayload) {
		t.Fatalf("got %v, want ErrUnencryptedPayload", err)
	}
}

func TestDisableEncryptionStillDecrypts(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	enc := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: arn}), payload("x"))
	rollback := newCodec(t, codec.Options{KMS: fake, DecryptKeyIDs: []string{arn}, DisableEncryption: true})
	in := []*commonpb.Payload{payload("new")}
	if out := encode(t, rollback, in...); !equal(out, in) {
		t.Fatal("Encode changed a payload with encryption disabled")
	}
	if out := mustDecode(t, rollback, enc); string(out[0].Data) != `"x"` {
		t.Fatal("Decode failed with encryption disabled")
	}
}

// Structurally invalid payloads fail with a typed error before any KMS
// call: the mock fails the test on any call.
func TestBadPayloadsFailWithATypedErrorAndNoKMSCall(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	good := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: arn, Namespace: "ns"}), payload("x"))[0]
	with := func(change func(p *commonpb.Payload)) *commonpb.Payload {
		p := proto.Clone(good).(*commonpb.Payload)
		change(p)
		return p
	}
	tests := []struct {
		name    string
		payload *commonpb.Payload
		want    error
	}{
		{"nil payload", nil, codec.ErrMalformedPayload},
		{"truncated data", with(func(p *commonpb.Payload) { p.Data = p.Data[:10] }), codec.ErrMalformedPayload},
		{"missing key ARN", with(func(p *commonpb.Payload) { delete(p.Metadata, "encryption-key-id") }), codec.ErrMalformedPayload},
		{"missing wrapped key", with(func(p *commonpb.Payload) { delete(p.Metadata, "encryption-data-key") }), codec.ErrMalformedPayload},
		{"context not JSON", with(func(p *commonpb.Payload) { p.Metadata["encryption-context"] = []byte("{") }), codec.ErrMalformedPayload},
		{"context not an object of strings", with(func(p *commonpb.Payload) { p.Metadata["encryption-context"] = []byte(`{"a":[1]}`) }), codec.ErrMalformedPayload},
		{"oversized wrapped key", with(func(p *commonpb.Payload) { p.Metadata["encryption-data-key"] = make([]byte, 5000) }), codec.ErrMalformedPayload},
		{"oversized key ARN", with(func(p *commonpb.Payload) { p.Metadata["encryption-key-id"] = make([]byte, 3000) }), codec.ErrMalformedPayload},
		{"oversized context", with(func(p *commonpb.Payload) { p.Metadata["encryption-context"] = make([]byte, 9000) }), codec.ErrMalformedPayload},
		{"unknown format", with(func(p *commonpb.Payload) { p.Metadata["encryption-format"] = []byte("kms-envelope-v9") }), codec.ErrUnsupportedFormat},
		{"disallowed key", with(func(p *commonpb.Payload) {
			p.Metadata["encryption-key-id"] = []byte("arn:aws:kms:us-east-1:999999999999:key/evil")
		}), codec.ErrKeyNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mocks.NewMockAPI(gomock.NewController(t))
			c := newCodec(t, codec.Options{KMS: m, KeyID: arn})
			out, err := c.Decode([]*commonpb.Payload{payload("fine"), tt.payload})
			if !errors.Is(err, tt.want) || out != nil {
				t.Fatalf("got %v (%d payloads), want %v and none", err, len(out), tt.want)
			}
			if !strings.Contains(err.Error(), "payload 2 of 2") {
				t.Errorf("error does not say which payload: %v", err)
			}
		})
	}
}

func TestAlteredPayloadsFailAuthentication(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	c := newCodec(t, codec.Options{KMS: fake, KeyID: arn})
	good := encode(t, c, payload("x"))[0]
	for _, i := range []int{0, 40, 70, len(good.Data) - 1} {
		p := proto.Clone(good).(*commonpb.Payload)
		p.Data[i] ^= 1
		if _, err := c.Decode([]*commonpb.Payload{p}); !errors.Is(err, codec.ErrAuthenticationFailed) {
			t.Fatalf("byte %d flipped: got %v", i, err)
		}
	}
	if s := c.Stats(); s.ErrorsAuthentication != 4 {
		t.Fatalf("stats %+v", s)
	}
}

// A changed context or wrapped key reaches KMS, which refuses it: the
// data key is bound to both.
func TestKMSRefusesAChangedContext(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	p := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: arn, Namespace: "ns1"}), payload("x"))[0]
	p.Metadata["encryption-context"] = []byte(`{"temporal-namespace":"ns2"}`)
	_, err := newCodec(t, codec.Options{KMS: fake, KeyID: arn}).Decode([]*commonpb.Payload{p})
	var invalid *types.InvalidCiphertextException
	var kmsErr *codec.KMSError
	if !errors.As(err, &invalid) || !errors.As(err, &kmsErr) || kmsErr.Op != "Decrypt" {
		t.Fatalf("got %v, want KMS to refuse", err)
	}
}

func TestKMSFailuresFailTheTaskAndNeverLeakPlaintext(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"throttled", &types.LimitExceededException{}},
		{"access denied", &types.KMSInvalidStateException{}},
		{"timeout", context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mocks.NewMockAPI(gomock.NewController(t))
			m.EXPECT().GenerateDataKey(gomock.Any(), gomock.Any()).Return(nil, tt.err)
			c := newCodec(t, codec.Options{KMS: m, KeyID: "arn:aws:kms:us-east-1:111122223333:key/k"})
			out, err := c.Encode(payloads(3))
			if out != nil {
				t.Fatal("Encode returned payloads after a KMS failure")
			}
			var retry *converter.WorkflowTaskFailureError
			var kmsErr *codec.KMSError
			if !errors.Is(err, tt.err) || !errors.As(err, &retry) || !errors.As(err, &kmsErr) {
				t.Fatalf("got %v, want a workflow task failure wrapping the KMS error", err)
			}
			if c.Stats().ErrorsKMS != 1 {
				t.Fatalf("stats %+v", c.Stats())
			}
		})
	}
}

func TestOptionsAreValidated(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	tests := []struct {
		name string
		opts codec.Options
	}{
		{"no KMS", codec.Options{KeyID: arn}},
		{"no key", codec.Options{KMS: fake}},
		{"alias in the allow-list", codec.Options{KMS: fake, KeyID: arn, DecryptKeyIDs: []string{"alias/old"}}},
		{"namespace in the context", codec.Options{KMS: fake, KeyID: arn, EncryptionContext: map[string]string{codec.NamespaceContextKey: "x"}}},
		{"huge context", codec.Options{KMS: fake, KeyID: arn, EncryptionContext: map[string]string{"a": strings.Repeat("b", 5000)}}},
		{"context not UTF-8", codec.Options{KMS: fake, KeyID: arn, EncryptionContext: map[string]string{"a": "\xff"}}},
		{"negative max age", codec.Options{KMS: fake, KeyID: arn, DataKeyMaxAge: -time.Second}},
		{"negative payload limit", codec.Options{KMS: fake, KeyID: arn, MaxPayloadsPerDataKey: -1}},
		{"negative cache size", codec.Options{KMS: fake, KeyID: arn, DecryptCacheSize: -1}},
		{"negative timeout", codec.Options{KMS: fake, KeyID: arn, KMSTimeout: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := codec.New(tt.opts); err == nil {
				t.Fatal("New accepted the options")
			}
		})
	}
}

func TestNewMakesNoKMSCall(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t)) // any call fails the test
	newCodec(t, codec.Options{KMS: m, KeyID: "alias/temporal"})
}

func TestConcurrentEncodeAndDecode(t *testing.T) {
	fake := kmstest.New()
	c := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey(), MaxPayloadsPerDataKey: 100})
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := range 50 {
				in := []*commonpb.Payload{payload(fmt.Sprintf("%d-%d", g, i))}
				enc, err := c.WithNamespace(fmt.Sprint("ns", g%4)).Encode(in)
				if err != nil {
					t.Error(err)
					return
				}
				if out, err := c.Decode(enc); err != nil || !equal(in, out) {
					t.Errorf("round trip: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	s := c.Stats()
	if s.PayloadsEncoded != 3200 || s.PayloadsDecoded != 3200 || s.DecryptCalls != 0 {
		t.Fatalf("stats %+v", s)
	}
	// 3,200 payloads in 4 namespaces, 100 per data key: at least 32 keys, and
	// racing goroutines may at most add one per namespace for the last key.
	if s.GenerateDataKeyCalls < 32 || s.GenerateDataKeyCalls > 36 {
		t.Fatalf("%d GenerateDataKey calls, want 32 to 36", s.GenerateDataKeyCalls)
	}
}

func TestMaxBytesPerDataKey(t *testing.T) {
	fake := kmstest.New()
	c := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey(), MaxBytesPerDataKey: 1000})
	big := &commonpb.Payload{Data: make([]byte, 400)}
	encode(t, c, big, big, big, big, big)
	// Two 400-byte payloads (plus metadata) fit under 1,000 bytes; five need three keys.
	if n := fake.Calls("GenerateDataKey"); n != 3 {
		t.Fatalf("%d GenerateDataKey calls, want 3", n)
	}
}

func TestEnvelopeIsReadableWithoutTheCodec(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	p := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: arn, Namespace: "ns1"}), payload("x"))[0]
	e, err := envelope.Parse(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, _ := e.EncryptionContext()
	if e.KeyARN != arn || ctx[codec.NamespaceContextKey] != "ns1" {
		t.Fatalf("envelope %+v %v", e, ctx)
	}
	// The wrapped key in the metadata is what KMS returned: it unwraps with the context.
	if _, err := fake.Decrypt(context.Background(), &awskms.DecryptInput{KeyId: &arn, CiphertextBlob: e.WrappedKey, EncryptionContext: ctx}); err != nil {
		t.Fatal(err)
	}
}

func TestDecryptFailuresFailTheTask(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	enc := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: arn}), payload("x"))
	tests := []struct {
		name string
		err  error
	}{
		{"throttled", &types.LimitExceededException{}},
		{"key disabled", &types.DisabledException{}},
		{"timeout", context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mocks.NewMockAPI(gomock.NewController(t))
			m.EXPECT().Decrypt(gomock.Any(), gomock.Any()).Return(nil, tt.err)
			c := newCodec(t, codec.Options{KMS: m, KeyID: arn})
			out, err := c.Decode(enc)
			var retry *converter.WorkflowTaskFailureError
			var kmsErr *codec.KMSError
			if out != nil || !errors.Is(err, tt.err) || !errors.As(err, &retry) || !errors.As(err, &kmsErr) || kmsErr.Op != "Decrypt" {
				t.Fatalf("got %v, want a workflow task failure wrapping the KMS error", err)
			}
		})
	}
}

func TestAliasResolutionFailureFailsTheTask(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	enc := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: arn}), payload("x"))
	m := mocks.NewMockAPI(gomock.NewController(t))
	m.EXPECT().DescribeKey(gomock.Any(), gomock.Any()).Return(nil, &types.NotFoundException{})
	_, err := newCodec(t, codec.Options{KMS: m, KeyID: "alias/gone"}).Decode(enc)
	var notFound *types.NotFoundException
	var retry *converter.WorkflowTaskFailureError
	if !errors.As(err, &notFound) || !errors.As(err, &retry) {
		t.Fatalf("got %v", err)
	}
}

func TestEncodeOfNoPayloadsMakesNoKMSCall(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t)) // any call fails the test
	c := newCodec(t, codec.Options{KMS: m, KeyID: "alias/k"})
	if out, err := c.Encode(nil); err != nil || len(out) != 0 {
		t.Fatalf("got %v, %v", out, err)
	}
	if out, err := c.Decode(nil); err != nil || len(out) != 0 {
		t.Fatalf("got %v, %v", out, err)
	}
}

// Every payload is bound to a namespace when the codec has one to fall
// back on: the SDK's serialization context names the namespace of
// workflow and activity payloads; a Nexus context names none, and neither
// do SDK paths that encode with no context at all, so those are bound to
// Options.Namespace, whichever view of the codec the SDK starts from.
func TestEverySerializationContextBindsANamespace(t *testing.T) {
	fake := kmstest.New()
	c := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey(), Namespace: "home"})
	other := c.WithNamespace("other")
	nexus := converter.NexusSerializationContext{Endpoint: "e", Service: "s", Operation: "o"}
	for _, tc := range []struct {
		name  string
		codec converter.PayloadCodec
		want  string
	}{
		{"no context", c, "home"},
		{"workflow", c.WithSerializationContext(converter.WorkflowSerializationContext{Namespace: "ns1", WorkflowID: "w"}), "ns1"},
		{"activity", c.WithSerializationContext(converter.ActivitySerializationContext{Namespace: "ns2"}), "ns2"},
		{"workflow without namespace", c.WithSerializationContext(converter.WorkflowSerializationContext{WorkflowID: "w"}), "home"},
		{"activity without namespace", c.WithSerializationContext(converter.ActivitySerializationContext{ActivityType: "a"}), "home"},
		{"nexus", c.WithSerializationContext(nexus), "home"},
		{"nexus from another namespace's view", other.WithSerializationContext(nexus), "home"},
		{"workflow without namespace from another namespace's view", other.WithSerializationContext(converter.WorkflowSerializationContext{WorkflowID: "w"}), "home"},
		{"workflow from another namespace's view", other.WithSerializationContext(converter.WorkflowSerializationContext{Namespace: "ns1"}), "ns1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.codec.Encode([]*commonpb.Payload{payload("x")})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(out[0].Metadata["encryption-context"]), `{"temporal-namespace":"`+tc.want+`"}`; got != want {
				t.Errorf("context %s, want %s", got, want)
			}
		})
	}
}
