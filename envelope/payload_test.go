package envelope

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The hand-written encoding of a payload is byte for byte what
// proto.Marshal writes deterministically, and payloadSize is its length.
func TestMarshalMatchesProto(t *testing.T) {
	many := map[string][]byte{}
	for i := range 20 { // more keys than marshalAppend keeps on the stack
		many[fmt.Sprintf("key-%02d", 19-i)] = bytes.Repeat([]byte{byte(i)}, i*10)
	}
	withUnknown := &commonpb.Payload{Data: []byte("d")}
	withUnknown.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 9, protowire.BytesType), []byte("u")))
	tests := []struct {
		name string
		p    *commonpb.Payload
	}{
		{"empty", &commonpb.Payload{}},
		{"data only", &commonpb.Payload{Data: []byte("x")}},
		{"empty data", &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/null")}, Data: []byte{}}},
		{"typical", &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`{"a":1}`)}},
		{"empty key and values", &commonpb.Payload{Metadata: map[string][]byte{"": []byte("v"), "nil": nil, "empty": {}}}},
		{"non-ASCII key", &commonpb.Payload{Metadata: map[string][]byte{"clé": []byte("v"), "ключ": []byte("w")}}},
		{"long lengths", &commonpb.Payload{Metadata: map[string][]byte{strings.Repeat("k", 300): bytes.Repeat([]byte("v"), 20000)}, Data: make([]byte, 1<<20)}},
		{"many keys", &commonpb.Payload{Metadata: many, Data: []byte("d")}},
		{"external payloads", &commonpb.Payload{Metadata: map[string][]byte{"b": {1}, "a": {2}}, Data: []byte("d"), ExternalPayloads: []*commonpb.Payload_ExternalPayloadDetails{{SizeBytes: 5}}}},
		{"unknown fields", withUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(tt.p)
			if err != nil {
				t.Fatal(err)
			}
			size := payloadSize(tt.p)
			if size != len(want) {
				t.Errorf("payloadSize %d, proto.Marshal writes %d bytes", size, len(want))
			}
			got, err := marshalAppend([]byte("prefix"), tt.p, size)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, append([]byte("prefix"), want...)) {
				t.Errorf("got  %x\nwant prefix+%x", got, want)
			}
		})
	}
}

// A metadata key that is not UTF-8 fails to marshal, as with proto.Marshal.
func TestMarshalRefusesAKeyThatIsNotUTF8(t *testing.T) {
	p := &commonpb.Payload{Metadata: map[string][]byte{"\xff": []byte("v")}}
	if _, err := marshalAppend(nil, p, payloadSize(p)); err == nil {
		t.Fatal("no error")
	}
}

func TestMarshalOfATypicalPayloadDoesNotAllocate(t *testing.T) {
	p := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain"), "messageType": []byte("x")}, Data: make([]byte, 1024)}
	buf := make([]byte, 0, 2048)
	if n := testing.AllocsPerRun(100, func() { marshalAppend(buf, p, payloadSize(p)) }); n != 0 {
		t.Fatalf("%v allocations, want none", n)
	}
}

// The buffer Seal encrypts in place holds room for the salt and
// commitment, then exactly what proto.Marshal writes, with room for the
// tag after it: for data of every size, including sizes where the
// allocation's size class would leave less than a tag's room.
func TestMarshalForSealLeavesRoomAroundTheEncoding(t *testing.T) {
	const header = SaltSize + CommitmentSize
	md := map[string][]byte{"encoding": []byte("json/plain")}
	headLen := header + payloadSize(&commonpb.Payload{Metadata: md, Data: make([]byte, 1<<20)}) - 1<<20
	sizes := []int{0, 1, largeData - 1, largeData, 1 << 20}
	for _, page := range []int{1 << 20, 1<<20 + 8<<10} {
		for slack := range TagSize + 1 { // the buffer's end just below a page boundary
			sizes = append(sizes, page-headLen-slack)
		}
	}
	for _, n := range sizes {
		p := &commonpb.Payload{Metadata: md, Data: bytes.Repeat([]byte{7}, n)}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := marshalForSeal(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b[header:], want) {
			t.Errorf("%d bytes of data: the encoding differs from proto.Marshal", n)
		}
		if cap(b)-len(b) < TagSize {
			t.Errorf("%d bytes of data: %d bytes of room after the encoding, want %d", n, cap(b)-len(b), TagSize)
		}
	}
}
