package envelope

import (
	"unicode/utf8"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// marshalAppend appends the protobuf encoding of p to b. Map entries are
// written in sorted order when there are several, so that a test
// vector's bytes do not depend on map iteration order; with one entry or
// none the order question does not arise and the cheaper path is taken.
// sized says proto.Size(p) was just called, so its result may be reused.
func marshalAppend(b []byte, p *commonpb.Payload, sized bool) ([]byte, error) {
	opts := proto.MarshalOptions{UseCachedSize: sized, Deterministic: len(p.GetMetadata()) > 1}
	return opts.MarshalAppend(b, p)
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
	return string(key), value, true
}
