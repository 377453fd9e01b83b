package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"sort"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/proto"

	"github.com/temporal-kms/kmscodec/envelope"
)

// Migrating from a static-key codec: Options.Legacy decodes what such a
// codec wrote, and LegacyStaticKeyDecoder is that decoder for the layout
// of Temporal's encryption samples.

var (
	// ErrLegacyKeyUnknown: a payload in the static-key layout names a key
	// ID that the LegacyStaticKeyDecoder was not given. The error names
	// the key ID. It is a kind of ErrKeyNotAllowed (errors.Is holds for
	// both, and ErrorKind gives KindKeyNotAllowed): configuration, not the
	// payload's fault, so a worker missing the key fails the workflow task,
	// to be retried, rather than the workflow.
	ErrLegacyKeyUnknown error = legacyKeyUnknown{}

	// errLegacyEncode is what LegacyStaticKeyDecoder.Encode returns.
	errLegacyEncode = errors.New("kmscodec: the legacy static-key decoder only decodes; new payloads are encrypted by the KMS codec")
)

// legacyKeyUnknown is ErrLegacyKeyUnknown's type, which is also
// ErrKeyNotAllowed.
type legacyKeyUnknown struct{}

func (legacyKeyUnknown) Error() string { return "legacy payload's static key is unknown" }

func (legacyKeyUnknown) Is(target error) bool { return target == ErrKeyNotAllowed }

// Metadata and sizes of the static-key layout.
const (
	// LegacyCipherField is the metadata field in which the Java sample
	// names its cipher; the others write none.
	LegacyCipherField = "encryption-cipher"
	// LegacyCipher is the only cipher the layout uses.
	LegacyCipher = "AES/GCM/NoPadding"
	// LegacyKeySize is the size of a static key: AES-256.
	LegacyKeySize = 32

	legacyNonceSize = 12
	legacyTagSize   = 16
	// maxLegacyKeyIDInError bounds how much of a key ID, read from an
	// untrusted payload, an error repeats.
	maxLegacyKeyIDInError = 128
)

// LegacyStaticKeyDecoder decodes the payloads of the encryption codec
// that Temporal's samples show (in Go, Java, TypeScript and Python), so
// that histories written with it stay readable after moving to kmscodec.
// Set it as Options.Legacy.
//
// A payload in that layout has the metadata encoding "binary/encrypted"
// and encryption-key-id naming a static AES-256 key, no
// encryption-format, and (Java only) encryption-cipher
// "AES/GCM/NoPadding". Its data is a 12-byte nonce followed by the
// AES-256-GCM sealing, with a 16-byte tag and no additional data, of the
// protobuf encoding of the original payload. Every other payload passes
// through unchanged.
//
// It only decodes: Encode always fails. It is safe for concurrent use.
type LegacyStaticKeyDecoder struct {
	keys map[string]cipher.AEAD // by key ID
}

// NewLegacyStaticKeyDecoder returns a decoder for payloads sealed under
// any of keys, each a 32-byte AES-256 key by its key ID (the value of the
// payloads' encryption-key-id). The map is not kept: later changes to it
// have no effect.
func NewLegacyStaticKeyDecoder(keys map[string][]byte) (*LegacyStaticKeyDecoder, error) {
	if len(keys) == 0 {
		return nil, errors.New("kmscodec: NewLegacyStaticKeyDecoder: no keys")
	}
	d := &LegacyStaticKeyDecoder{keys: make(map[string]cipher.AEAD, len(keys))}
	for _, id := range sortedKeyIDs(keys) {
		if id == "" {
			return nil, errors.New("kmscodec: NewLegacyStaticKeyDecoder: a key has an empty key ID")
		}
		if len(keys[id]) != LegacyKeySize {
			return nil, fmt.Errorf("kmscodec: NewLegacyStaticKeyDecoder: key %q is %d bytes, want %d (AES-256)", id, len(keys[id]), LegacyKeySize)
		}
		block, err := aes.NewCipher(keys[id])
		if err != nil {
			return nil, fmt.Errorf("kmscodec: NewLegacyStaticKeyDecoder: key %q: %w", id, err)
		}
		if d.keys[id], err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("kmscodec: NewLegacyStaticKeyDecoder: key %q: %w", id, err)
		}
	}
	return d, nil
}

// sortedKeyIDs orders the key IDs so that validation errors are the same
// from run to run.
func sortedKeyIDs(keys map[string][]byte) []string {
	ids := make([]string, 0, len(keys))
	for id := range keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Encode always fails: payloads are never written in the legacy layout.
func (d *LegacyStaticKeyDecoder) Encode([]*commonpb.Payload) ([]*commonpb.Payload, error) {
	return nil, errLegacyEncode
}

// Decode opens each payload in the static-key layout and passes every
// other payload through unchanged. A payload under a key ID it was not
// given fails with ErrLegacyKeyUnknown; one whose tag does not verify
// with ErrAuthenticationFailed; one too short to hold a nonce and a tag,
// or naming another cipher, with ErrMalformedPayload or
// ErrUnsupportedFormat.
func (d *LegacyStaticKeyDecoder) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		var err error
		if out[i], err = d.decodeOne(p); err != nil {
			return nil, fmt.Errorf("kmscodec: legacy payload %d of %d: %w", i+1, len(payloads), err)
		}
	}
	return out, nil
}

// decodeOne opens p if it is in the static-key layout and returns it
// unchanged otherwise.
func (d *LegacyStaticKeyDecoder) decodeOne(p *commonpb.Payload) (*commonpb.Payload, error) {
	if !isLegacyLayout(p) {
		return p, nil
	}
	return d.open(p)
}

// isLegacyLayout reports whether p is marked as the static-key layout
// marks its payloads: binary/encrypted with no encryption-format.
func isLegacyLayout(p *commonpb.Payload) bool {
	md := p.GetMetadata()
	_, hasFormat := md[envelope.MetadataFormat]
	return string(md[envelope.MetadataEncoding]) == envelope.EncodingEncrypted && !hasFormat
}

func (d *LegacyStaticKeyDecoder) open(p *commonpb.Payload) (*commonpb.Payload, error) {
	md := p.GetMetadata()
	if c, ok := md[LegacyCipherField]; ok && string(c) != LegacyCipher {
		return nil, fmt.Errorf("%w: %s %q", ErrUnsupportedFormat, LegacyCipherField, clip(c))
	}
	id, ok := md[envelope.MetadataKeyID]
	if !ok || len(id) == 0 {
		return nil, fmt.Errorf("%w: binary/encrypted payload without %s", ErrMalformedPayload, envelope.MetadataKeyID)
	}
	aead, ok := d.keys[string(id)]
	if !ok {
		return nil, fmt.Errorf("%w: key ID %q", ErrLegacyKeyUnknown, clip(id))
	}
	if len(p.GetData()) < legacyNonceSize+legacyTagSize {
		return nil, fmt.Errorf("%w: data is %d bytes, shorter than a nonce and a tag", ErrMalformedPayload, len(p.GetData()))
	}
	nonce, sealed := p.Data[:legacyNonceSize], p.Data[legacyNonceSize:]
	plaintext, err := aead.Open(nil, nonce, sealed, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: legacy payload under key ID %q", ErrAuthenticationFailed, clip(id))
	}
	inner := &commonpb.Payload{}
	if err := proto.Unmarshal(plaintext, inner); err != nil {
		return nil, fmt.Errorf("%w: decrypted legacy payload is not a protobuf Payload", ErrMalformedPayload)
	}
	return inner, nil
}

// clip shortens a value read from a payload before an error repeats it.
func clip(b []byte) string {
	if len(b) > maxLegacyKeyIDInError {
		return string(b[:maxLegacyKeyIDInError]) + "..."
	}
	return string(b)
}

// decodeLegacy hands the payloads at positions to Options.Legacy, one at
// a time so that an error names its payload, and puts what comes back in
// out. It runs before any KMS call, so a batch that fails here costs
// none. With RejectUnencrypted, a payload that Legacy hands back
// unchanged was not encrypted by anyone and fails the batch.
func (s *shared) decodeLegacy(payloads []*commonpb.Payload, positions []int, out []*commonpb.Payload) error {
	for _, i := range positions {
		decoded, err := s.legacyDecodeOne(payloads[i])
		if err != nil {
			return s.fail("decode", i, len(payloads), err)
		}
		if s.opts.RejectUnencrypted && (decoded == payloads[i] || proto.Equal(decoded, payloads[i])) {
			return s.fail("decode", i, len(payloads), ErrUnencryptedPayload)
		}
		out[i] = decoded
	}
	return nil
}

// legacyDecodeOne decodes p with Options.Legacy, checking that it keeps
// the PayloadCodec contract. The codec's own LegacyStaticKeyDecoder is
// called directly, so that its errors do not name the position twice.
func (s *shared) legacyDecodeOne(p *commonpb.Payload) (*commonpb.Payload, error) {
	if d, ok := s.opts.Legacy.(*LegacyStaticKeyDecoder); ok {
		return d.decodeOne(p)
	}
	decoded, err := s.opts.Legacy.Decode([]*commonpb.Payload{p})
	switch {
	case err != nil:
		return nil, err
	case len(decoded) != 1:
		return nil, fmt.Errorf("Options.Legacy returned %d payloads for 1", len(decoded))
	case decoded[0] == nil:
		return nil, errors.New("Options.Legacy returned a nil payload")
	}
	return decoded[0], nil
}
