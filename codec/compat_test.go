package codec_test

// Compatibility with what a namespace's history may already hold when
// kmscodec is rolled out, or rolled back: payloads of a plain data
// converter, and payloads of the static-key encryption codec that
// Temporal's samples show, which many deployments started from.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// sampleCodec encrypts the way Temporal's sample encryption codec does:
// the whole payload is marshalled and sealed with AES-256-GCM under one
// static key, a random 12-byte nonce in front of the ciphertext; the
// result is marked encoding binary/encrypted and names its key in
// encryption-key-id, with no encryption-format. Decode opens any
// binary/encrypted payload and passes everything else through.
//
// It records every payload it is asked to open, so a test can check what
// reached it.
type sampleCodec struct {
	keyName string
	aead    cipher.AEAD

	mu       sync.Mutex
	received []*commonpb.Payload
}

func newSampleCodec(t *testing.T, keyName string) *sampleCodec {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return &sampleCodec{keyName: keyName, aead: aead}
}

func (s *sampleCodec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plaintext, err := proto.Marshal(p)
		if err != nil {
			return nil, err
		}
		nonce := make([]byte, s.aead.NonceSize())
		rand.Read(nonce)
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				"encoding":          []byte("binary/encrypted"),
				"encryption-key-id": []byte(s.keyName),
			},
			Data: s.aead.Seal(nonce, nonce, plaintext, nil),
		}
	}
	return out, nil
}

func (s *sampleCodec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()["encoding"]) != "binary/encrypted" {
			out[i] = p
			continue
		}
		s.mu.Lock()
		s.received = append(s.received, proto.Clone(p).(*commonpb.Payload))
		s.mu.Unlock()
		if name := string(p.Metadata["encryption-key-id"]); name != s.keyName {
			return nil, fmt.Errorf("sample codec: unknown key %q", name)
		}
		n := s.aead.NonceSize()
		if len(p.Data) < n {
			return nil, errors.New("sample codec: payload too short")
		}
		plaintext, err := s.aead.Open(nil, p.Data[:n], p.Data[n:], nil)
		if err != nil {
			return nil, fmt.Errorf("sample codec: %w", err)
		}
		out[i] = &commonpb.Payload{}
		if err := proto.Unmarshal(plaintext, out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// The sample codec's payloads are binary/encrypted too, but carry no
// encryption-format: the KMS codec hands them on exactly as they are,
// with no KMS call.
func TestSampleCodecPayloadsPassThroughTheKMSCodecUntouched(t *testing.T) {
	sample := newSampleCodec(t, "sample-key")
	history, err := sample.Encode(payloads(3))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]*commonpb.Payload, len(history))
	for i, p := range history {
		want[i] = proto.Clone(p).(*commonpb.Payload)
	}
	m := newMockWithNoCalls(t)
	c := newCodec(t, codec.Options{KMS: m, KeyID: "alias/temporal"})
	out := mustDecode(t, c, history)
	for i := range out {
		if out[i] != history[i] || !proto.Equal(out[i], want[i]) {
			t.Fatalf("payload %d was not passed through untouched", i+1)
		}
	}
	if s := c.Stats(); s.PayloadsPassedThrough != 3 || s.PayloadsDecoded != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// A chain with the KMS codec first (it encodes last and decodes first)
// reads history written by a plain converter, by the sample codec alone,
// by the chain itself, and by the KMS codec alone, and the sample codec
// receives its own payloads byte for byte as it wrote them. It is not the
// way to migrate: the chain also seals every new payload under the
// sample's static key (see legacy_test.go); Options.Legacy is.
func TestAChainWithTheKMSCodecFirstReadsSampleCodecAndPlainHistory(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	kms := &kmstest.Counter{API: fake}
	kmsCodec := newCodec(t, codec.Options{KMS: kms, KeyID: arn})
	sample := newSampleCodec(t, "sample-key")
	parent := converter.GetDefaultDataConverter()

	plainWriter := parent
	sampleWriter := converter.NewCodecDataConverter(parent, sample)
	chain := converter.NewCodecDataConverter(parent, kmsCodec, sample)
	kmsWriter := converter.NewCodecDataConverter(parent, kmsCodec)

	type order struct {
		ID     string
		Amount int
	}
	written := map[string]*commonpb.Payloads{}
	for name, dc := range map[string]converter.DataConverter{"plain": plainWriter, "sample": sampleWriter, "chain": chain, "kms": kmsWriter} {
		p, err := dc.ToPayloads(order{ID: name, Amount: 42}, "card 4111 1111 1111 1111")
		if err != nil {
			t.Fatal(err)
		}
		written[name] = p
	}
	sampleHistory := proto.Clone(written["sample"]).(*commonpb.Payloads)
	if n := kms.Total(); n != 1 {
		t.Fatalf("%d KMS calls writing, want 1 (the codec's data key)", n)
	}
	for _, p := range append(written["chain"].Payloads, written["kms"].Payloads...) {
		if string(p.Metadata["encryption-format"]) != "kms-envelope-v1" {
			t.Fatal("a payload written through the KMS codec is not kms-envelope-v1 outermost")
		}
	}

	for _, name := range []string{"plain", "sample", "chain", "kms"} {
		t.Run(name, func(t *testing.T) {
			var got order
			var card string
			if err := chain.FromPayloads(written[name], &got, &card); err != nil {
				t.Fatal(err)
			}
			if got != (order{ID: name, Amount: 42}) || card != "card 4111 1111 1111 1111" {
				t.Fatalf("read back %+v, %q", got, card)
			}
		})
	}
	// What the sample codec was given: its own history, intact, and the
	// chain's payloads once the KMS codec had opened them.
	sample.mu.Lock()
	defer sample.mu.Unlock()
	if len(sample.received) != 4 {
		t.Fatalf("the sample codec was given %d payloads, want 2 of its history and 2 of the chain's", len(sample.received))
	}
	for i, p := range sampleHistory.Payloads {
		if !proto.Equal(sample.received[i], p) {
			t.Fatalf("the sample codec was given payload %d changed", i+1)
		}
	}
	if n := kms.DecryptCalls.Load(); n != 0 {
		t.Fatalf("%d Decrypt calls reading: the writer's own data key is cached, and other payloads need none", n)
	}
}

// In the other order the sample codec decodes first and takes payloads
// that the KMS codec wrote on its own for its own: the KMS codec must be
// first in a chain, or history written after the sample codec is retired
// cannot be read during the migration.
func TestAChainWithTheSampleCodecFirstCannotReadWhatTheKMSCodecAloneWrote(t *testing.T) {
	fake := kmstest.New()
	kmsCodec := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey()})
	parent := converter.GetDefaultDataConverter()
	p, err := converter.NewCodecDataConverter(parent, kmsCodec).ToPayloads("x")
	if err != nil {
		t.Fatal(err)
	}
	var s string
	wrongOrder := converter.NewCodecDataConverter(parent, newSampleCodec(t, "sample-key"), kmsCodec)
	if err := wrongOrder.FromPayloads(p, &s); err == nil {
		t.Fatal("the sample codec, decoding first, read a kms-envelope-v1 payload")
	}
	rightOrder := converter.NewCodecDataConverter(parent, kmsCodec, newSampleCodec(t, "sample-key"))
	if err := rightOrder.FromPayloads(p, &s); err != nil || s != "x" {
		t.Fatalf("with the KMS codec first: %q, %v", s, err)
	}
}

// RejectUnencrypted rejects every payload that is not kms-envelope-v1,
// the sample codec's included: it is for after a migration is complete.
func TestRejectUnencryptedAlsoRejectsOtherCodecsPayloads(t *testing.T) {
	sample, err := newSampleCodec(t, "sample-key").Encode(payloads(1))
	if err != nil {
		t.Fatal(err)
	}
	c := newCodec(t, codec.Options{KMS: newMockWithNoCalls(t), KeyID: "alias/temporal", RejectUnencrypted: true})
	if _, err := c.Decode(sample); !errors.Is(err, codec.ErrUnencryptedPayload) {
		t.Fatalf("got %v, want ErrUnencryptedPayload", err)
	}
}

// RejectUnencrypted still decodes encrypted payloads; one unencrypted
// payload anywhere in a batch fails the whole batch, names its position
// and is counted.
func TestRejectUnencryptedFailsAWholeBatchForOnePlainPayload(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	c := newCodec(t, codec.Options{KMS: fake, KeyID: arn, RejectUnencrypted: true})
	in := payloads(3)
	enc := encode(t, c, in...)
	if out := mustDecode(t, c, enc); !equal(out, in) {
		t.Fatal("RejectUnencrypted changed the decoding of encrypted payloads")
	}
	for position := range 4 {
		batch := append(append(append([]*commonpb.Payload{}, enc[:position]...), payload("plain")), enc[position:]...)
		out, err := c.Decode(batch)
		if out != nil || !errors.Is(err, codec.ErrUnencryptedPayload) || !errorNamesPayload(err, position+1, 4) {
			t.Fatalf("plain payload at %d: got %d payloads and %v", position+1, len(out), err)
		}
	}
	if s := c.Stats(); s.ErrorsUnencrypted != 4 {
		t.Fatalf("stats %+v", s)
	}
}

// A rollout and its rollback, phase by phase, each phase's codec reading
// the history every earlier phase wrote:
//   - before: a plain data converter writes;
//   - encrypting: the codec writes kms-envelope-v1 and reads plain history;
//   - rolled back: DisableEncryption writes plain again, with no KMS call,
//     and still reads the encrypted history;
//   - enforcing: RejectUnencrypted reads encrypted history and refuses
//     plain payloads.
func TestEveryPhaseOfARolloutAndRollbackReadsTheHistoryBeforeIt(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	phases := []struct {
		name       string
		opts       *codec.Options // nil: no codec at all
		writes     string         // "plain" or "encrypted"
		readsPlain bool
	}{
		{"before", nil, "plain", true},
		{"encrypting", &codec.Options{KeyID: arn}, "encrypted", true},
		{"rolled back", &codec.Options{DecryptKeyIDs: []string{arn}, DisableEncryption: true}, "plain", true},
		{"rolled back, key still named", &codec.Options{KeyID: arn, DisableEncryption: true}, "plain", true},
		{"enforcing", &codec.Options{KeyID: arn, RejectUnencrypted: true}, "encrypted", false},
	}
	type record struct {
		in, stored *commonpb.Payload
		plain      bool
	}
	var history []record
	for i, phase := range phases {
		in := payload(fmt.Sprintf("written %s", phase.name))
		var stored *commonpb.Payload
		var c *codec.Codec
		if phase.opts == nil {
			stored = in
		} else {
			opts := *phase.opts
			kms := &kmstest.Counter{API: fake}
			opts.KMS = kms
			c = newCodec(t, opts)
			stored = encode(t, c, in)[0]
			if phase.writes == "plain" && (stored != in || kms.Total() != 0) {
				t.Fatalf("%s: Encode changed the payload or called KMS", phase.name)
			}
		}
		_, isEnvelope := stored.Metadata["encryption-format"]
		if isEnvelope != (phase.writes == "encrypted") {
			t.Fatalf("%s: wrote an encrypted payload: %v, want %s", phase.name, isEnvelope, phase.writes)
		}
		history = append(history, record{in: in, stored: stored, plain: !isEnvelope})
		if c == nil {
			continue
		}
		for j, r := range history[:i+1] {
			out, err := c.Decode([]*commonpb.Payload{r.stored})
			switch {
			case r.plain && !phase.readsPlain:
				if !errors.Is(err, codec.ErrUnencryptedPayload) {
					t.Errorf("%s reading what %s wrote: got %v, want ErrUnencryptedPayload", phase.name, phases[j].name, err)
				}
			case err != nil || !proto.Equal(out[0], r.in):
				t.Errorf("%s reading what %s wrote: %v", phase.name, phases[j].name, err)
			}
		}
	}
}
