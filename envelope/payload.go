package envelope

import (
	"slices"
	"unicode/utf8"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// marshalAppend appends the protobuf encoding of p to b, size bytes
// long, where size is what payloadSize returned. Map entries are written
// sorted by key, so that a test vector's bytes do not depend on map
// iteration order.
//
// Payloads as Temporal writes them have only metadata and data, and for
// those the wire format is written here directly: proto.Marshal reaches
// the map through reflection, at four allocations and about a third of
// the codec's own time for a 1 KiB payload. Anything else goes through
// proto.Marshal. TestMarshalMatchesProto checks that both give the same
// bytes.
func marshalAppend(b []byte, p *commonpb.Payload, size int) ([]byte, error) {
	if !isCommon(p) {
		opts := proto.MarshalOptions{Deterministic: true, UseCachedSize: true}
		return opts.MarshalAppend(b, p)
	}
	b = slices.Grow(b, size)
	b = appendCommonHead(b, p)
	return append(b, p.Data...), nil
}

// appendCommonHead appends the protobuf encoding of p, which isCommon,
// up to the bytes of its data: the metadata entries, then the tag and
// length of the data field if there is data.
func appendCommonHead(b []byte, p *commonpb.Payload) []byte {
	var keysBuf [8]string
	keys := keysBuf[:0]
	for k := range p.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := p.Metadata[k]
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(entrySize(k, v)))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, v)
	}
	if len(p.Data) > 0 {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(len(p.Data)))
	}
	return b
}

// largeData is the data size from which marshalForSeal builds its buffer
// by appending rather than with make.
const largeData = 32 << 10

// marshalForSeal returns room for the salt and commitment followed by
// the protobuf encoding of p, in a buffer with room for the tag after it,
// so that Seal encrypts in place.
//
// For large data the buffer is built by appending the data to the
// encoding of what precedes it. The runtime then allocates without
// zeroing, since the copy fills the buffer: a make of the whole buffer
// would clear a 1 MiB payload's worth of memory only for the copy to
// overwrite it, which costs a quarter as much as the encryption itself.
func marshalForSeal(p *commonpb.Payload) ([]byte, error) {
	const header = SaltSize + CommitmentSize
	size := payloadSize(p)
	if len(p.Data) < largeData || !isCommon(p) {
		return marshalAppend(make([]byte, header, header+size+TagSize), p, size)
	}
	head := appendCommonHead(make([]byte, header, header+size-len(p.Data)), p)
	b := append(head, p.Data...)
	if cap(b)-len(b) < TagSize {
		// Rare: the allocation's size class left no room for the tag.
		b = slices.Grow(b, TagSize)
	}
	return b, nil
}

// payloadSize returns the length of p's protobuf encoding.
func payloadSize(p *commonpb.Payload) int {
	if !isCommon(p) {
		return proto.Size(p)
	}
	n := 0
	for k, v := range p.Metadata {
		n += 1 + protowire.SizeBytes(entrySize(k, v))
	}
	if len(p.Data) > 0 {
		n += 1 + protowire.SizeBytes(len(p.Data))
	}
	return n
}

// isCommon reports whether p has nothing but metadata and data, with
// metadata keys that are valid UTF-8 (proto.Marshal refuses others).
func isCommon(p *commonpb.Payload) bool {
	if len(p.ExternalPayloads) > 0 || len(p.ProtoReflect().GetUnknown()) > 0 {
		return false
	}
	for k := range p.Metadata {
		if !utf8.ValidString(k) {
			return false
		}
	}
	return true
}

// entrySize is the length of one map entry's encoding: the key as field
// 1 and the value as field 2, both always written, as protobuf does.
func entrySize(k string, v []byte) int {
	return 1 + protowire.SizeBytes(len(k)) + 1 + protowire.SizeBytes(len(v))
}

// unmarshalPayload parses the plaintext of an envelope, which it takes
// ownership of.
//
// Payloads as Temporal writes them have only metadata and data. For those
// the wire format is read here so that the values alias b rather than
// being copied out of it: proto.Unmarshal would copy a 1 MiB payload once
// more after decryption. Anything else (other fields, invalid UTF-8 in a
// key, malformed input) goes through proto.Unmarshal, which has the final
// word on validity.
func unmarshalPayload(b []byte) (*commonpb.Payload, error) {
	p := &commonpb.Payload{}
	if unmarshalCommon(b, p) {
		return p, nil
	}
	p = &commonpb.Payload{}
	if err := proto.Unmarshal(b, p); err != nil {
		return nil, err
	}
	return p, nil
}

// unmarshalCommon fills p from b if b holds only fields 1 (metadata
// entries) and 2 (data), and reports whether it did.
func unmarshalCommon(b []byte, p *commonpb.Payload) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return false
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch num {
		case 1:
			key, value, ok := unmarshalEntry(v)
			if !ok {
				return false
			}
			if p.Metadata == nil {
				p.Metadata = make(map[string][]byte, 2)
			}
			p.Metadata[key] = value
		case 2:
			p.Data = v
		default:
			return false
		}
	}
	return true
}

// unmarshalEntry parses one map<string, bytes> entry: field 1 the key,
// field 2 the value, either possibly absent, the last occurrence winning.
func unmarshalEntry(b []byte) (string, []byte, bool) {
	var key, value []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return "", nil, false
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", nil, false
		}
		b = b[n:]
		switch num {
		case 1:
			// proto.Unmarshal checks every occurrence of a repeated
			// string field, not only the one that wins.
			if !utf8.Valid(v) {
				return "", nil, false
			}
			key = v
		case 2:
			value = v
		default:
			return "", nil, false
		}
	}
	if value == nil {
		value = []byte{}
	}
	return metadataKey(key), value, true
}

// metadataKey returns key as a string, without allocating for the keys
// the Temporal SDK writes into nearly every payload.
func metadataKey(key []byte) string {
	switch string(key) {
	case "encoding":
		return "encoding"
	case "messageType":
		return "messageType"
	}
	return string(key)
}
