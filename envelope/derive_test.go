package envelope

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func TestDeriveMatchesHKDF(t *testing.T) {
	for range 100 {
		dataKey, salt := make([]byte, 32), make([]byte, 32)
		rand.Read(dataKey)
		rand.Read(salt)
		wantKey, err := hkdf.Key(sha256.New, dataKey, salt, "kms-envelope-v1 derive", 32)
		if err != nil {
			t.Fatal(err)
		}
		wantCommitment, _ := hkdf.Key(sha256.New, dataKey, salt, "kms-envelope-v1 commit", 32)
		aead, commitment, err := derive(dataKey, salt)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(commitment[:], wantCommitment) {
			t.Fatal("commitment differs from HKDF")
		}
		// The AEAD must be AES-256-GCM under the HKDF payload key.
		sealed := aead.Seal(nil, zeroNonce[:], []byte("x"), nil)
		want, _ := newAEAD(wantKey)
		if !bytes.Equal(sealed, want.Seal(nil, zeroNonce[:], []byte("x"), nil)) {
			t.Fatal("payload key differs from HKDF")
		}
	}
}

// hmacKey equals crypto/hmac for every key and message length it
// accepts, including the empty ones and a key of exactly one block.
func TestHMACMatchesCryptoHMAC(t *testing.T) {
	for keyLen := 0; keyLen <= 64; keyLen++ {
		for msgLen := 0; msgLen <= 64; msgLen++ {
			key, msg := make([]byte, keyLen), make([]byte, msgLen)
			rand.Read(key)
			rand.Read(msg)
			mac := hmac.New(sha256.New, key)
			mac.Write(msg)
			k := newHMACKey(key)
			if got := k.sum(msg); !bytes.Equal(got[:], mac.Sum(nil)) {
				t.Fatalf("key of %d bytes, message of %d: differs from crypto/hmac", keyLen, msgLen)
			}
		}
	}
}

func TestDeriveDoesNotAllocateBeyondTheAEAD(t *testing.T) {
	dataKey, salt := make([]byte, 32), make([]byte, 32)
	// aes.NewCipher and cipher.NewGCM allocate one object each.
	if n := testing.AllocsPerRun(100, func() { derive(dataKey, salt) }); n > 2 {
		t.Fatalf("derive allocates %v objects, want at most 2", n)
	}
}

// The payload parser that aliases the plaintext gives what proto.Unmarshal
// gives, and hands over to it for anything unusual.
func TestUnmarshalPayloadMatchesProto(t *testing.T) {
	external := &commonpb.Payload{Data: []byte("d"), ExternalPayloads: []*commonpb.Payload_ExternalPayloadDetails{{SizeBytes: 5}}}
	externalBytes, _ := proto.Marshal(external)
	entry := func(fields ...[]byte) []byte {
		var e []byte
		for i, f := range fields {
			if f != nil {
				e = protowire.AppendTag(e, protowire.Number(i+1), protowire.BytesType)
				e = protowire.AppendBytes(e, f)
			}
		}
		m := protowire.AppendTag(nil, 1, protowire.BytesType)
		return protowire.AppendBytes(m, e)
	}
	data := func(d string) []byte {
		b := protowire.AppendTag(nil, 2, protowire.BytesType)
		return protowire.AppendBytes(b, []byte(d))
	}
	tests := []struct {
		name string
		wire []byte
	}{
		{"empty", nil},
		{"metadata and data", mustMarshal(t, vectorInput)},
		{"several entries", mustMarshal(t, &commonpb.Payload{Metadata: map[string][]byte{"a": {1}, "b": nil, "c": []byte("x")}, Data: []byte("d")})},
		{"external payloads", externalBytes},
		{"duplicate key, last wins", append(entry([]byte("k"), []byte("1")), entry([]byte("k"), []byte("2"))...)},
		{"duplicate data, last wins", append(data("first"), data("second")...)},
		{"entry without a value", entry([]byte("k"), nil)},
		{"entry without a key", entry(nil, []byte("v"))},
		{"key not UTF-8", entry([]byte{0xff}, []byte("v"))},
		{"truncated", mustMarshal(t, vectorInput)[:5]},
		{"unknown field", protowire.AppendBytes(protowire.AppendTag(nil, 9, protowire.BytesType), []byte("u"))},
		{"varint field", protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := &commonpb.Payload{}
			wantErr := proto.Unmarshal(tt.wire, want)
			got, err := unmarshalPayload(bytes.Clone(tt.wire))
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("error %v, proto.Unmarshal's %v", err, wantErr)
			}
			if err == nil && !proto.Equal(got, want) {
				t.Fatalf("got %v, proto.Unmarshal gives %v", got, want)
			}
		})
	}
}

func mustMarshal(t *testing.T, p *commonpb.Payload) []byte {
	t.Helper()
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
