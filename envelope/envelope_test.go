package envelope

import (
	"bytes"
	"crypto/rand"
	"errors"
	"maps"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/proto"
)

func testKey(t testing.TB, ctx map[string]string) (*Key, []byte) {
	t.Helper()
	dataKey := make([]byte, DataKeySize)
	rand.Read(dataKey)
	k, err := NewKey(dataKey, Header{KeyARN: vectorKeyARN, WrappedKey: vectorWrappedKey, EncryptionContext: ctx})
	if err != nil {
		t.Fatal(err)
	}
	return k, dataKey
}

func open(dataKey []byte, p *commonpb.Payload) (*commonpb.Payload, error) {
	e, err := Parse(p)
	if err != nil {
		return nil, err
	}
	return e.Open(dataKey)
}

func TestSealThenOpenReturnsTheInputPayload(t *testing.T) {
	k, dataKey := testKey(t, vectorContext)
	for _, size := range []int{0, 1, 64, 1 << 10, 1 << 20} {
		in := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: make([]byte, size)}
		rand.Read(in.Data)
		sealed, err := k.Seal(in, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(sealed.Data), proto.Size(in)+Overhead; got != want {
			t.Errorf("size %d: sealed data is %d bytes, want %d", size, got, want)
		}
		out, err := open(dataKey, sealed)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !proto.Equal(in, out) {
			t.Fatalf("size %d: round trip changed the payload", size)
		}
	}
}

func TestSealUsesAFreshSaltForEveryPayload(t *testing.T) {
	k, _ := testKey(t, nil)
	seen := map[string]bool{}
	for range 100 {
		p, err := k.Seal(vectorInput, nil)
		if err != nil {
			t.Fatal(err)
		}
		salt := string(p.Data[:SaltSize])
		if seen[salt] {
			t.Fatal("salt repeated")
		}
		seen[salt] = true
	}
}

func TestSealDoesNotModifyItsInput(t *testing.T) {
	k, _ := testKey(t, vectorContext)
	in := proto.Clone(vectorInput).(*commonpb.Payload)
	if _, err := k.Seal(in, nil); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, vectorInput) {
		t.Fatal("Seal modified its input")
	}
}

// Every bit of the sealed payload is covered: flipping any one of them
// makes Open fail, never return altered data.
func TestEveryFlippedBitFailsToOpen(t *testing.T) {
	k, dataKey := testKey(t, vectorContext)
	sealed, err := k.Seal(&commonpb.Payload{Data: []byte("secret")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fields := []string{"data", MetadataKeyID, MetadataDataKey, MetadataContext}
	for _, field := range fields {
		n := len(sealed.Metadata[field])
		if field == "data" {
			n = len(sealed.Data)
		}
		for i := range n * 8 {
			p := proto.Clone(sealed).(*commonpb.Payload)
			if field == "data" {
				p.Data[i/8] ^= 1 << (i % 8)
			} else {
				p.Metadata[field] = bytes.Clone(p.Metadata[field])
				p.Metadata[field][i/8] ^= 1 << (i % 8)
			}
			_, err := open(dataKey, p)
			if !errors.Is(err, ErrAuthentication) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s bit %d flipped: got %v, want an authentication or malformed error", field, i, err)
			}
		}
	}
}

func TestOpenWithAnotherDataKeyFailsTheCommitment(t *testing.T) {
	k, _ := testKey(t, nil)
	sealed, err := k.Seal(vectorInput, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := make([]byte, DataKeySize)
	_, err = open(other, sealed)
	if !errors.Is(err, ErrAuthentication) || !strings.Contains(err.Error(), "commitment") {
		t.Fatalf("got %v, want a commitment failure", err)
	}
}

func TestParseReadsTheHeaderWithoutAKey(t *testing.T) {
	k, _ := testKey(t, vectorContext)
	sealed, _ := k.Seal(vectorInput, nil)
	e, err := Parse(sealed)
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := e.EncryptionContext()
	if err != nil || !maps.Equal(ctx, vectorContext) {
		t.Fatalf("context %v, %v", ctx, err)
	}
	if e.KeyARN != vectorKeyARN || !bytes.Equal(e.WrappedKey, vectorWrappedKey) || e.KeyIdentity() != k.Identity() {
		t.Fatal("header does not match the key")
	}
}

func TestParseRejectsANilPayload(t *testing.T) {
	if _, err := Parse(nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v", err)
	}
}

func TestNewKeyValidatesItsInputs(t *testing.T) {
	good := Header{KeyARN: vectorKeyARN, WrappedKey: vectorWrappedKey}
	tests := []struct {
		name    string
		dataKey []byte
		header  Header
	}{
		{"short data key", make([]byte, 16), good},
		{"empty key ARN", make([]byte, 32), Header{WrappedKey: vectorWrappedKey}},
		{"empty wrapped key", make([]byte, 32), Header{KeyARN: vectorKeyARN}},
		{"oversized key ARN", make([]byte, 32), Header{KeyARN: strings.Repeat("a", MaxKeyARNSize+1), WrappedKey: vectorWrappedKey}},
		{"oversized wrapped key", make([]byte, 32), Header{KeyARN: vectorKeyARN, WrappedKey: make([]byte, MaxWrappedKeySize+1)}},
		{"oversized context", make([]byte, 32), Header{KeyARN: vectorKeyARN, WrappedKey: vectorWrappedKey, EncryptionContext: map[string]string{"a": strings.Repeat("b", MaxContextSize)}}},
		{"context not UTF-8", make([]byte, 32), Header{KeyARN: vectorKeyARN, WrappedKey: vectorWrappedKey, EncryptionContext: map[string]string{"a": "\xff"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewKey(tt.dataKey, tt.header); err == nil {
				t.Fatal("NewKey accepted it")
			}
		})
	}
}

func TestMarshalContextIsSortedAndCompact(t *testing.T) {
	got, err := MarshalContext(map[string]string{"b": "2", "a": "<&>", "c": "ü"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":"<&>","b":"2","c":"ü"}`; string(got) != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if got, _ := MarshalContext(nil); got != nil {
		t.Fatalf("empty context: got %q, want nil", got)
	}
}

func TestSealFailsWhenTheSaltCannotBeRead(t *testing.T) {
	k, _ := testKey(t, nil)
	if _, err := k.Seal(vectorInput, bytes.NewReader(make([]byte, 5))); err == nil {
		t.Fatal("Seal succeeded with a 5-byte salt source")
	}
}
