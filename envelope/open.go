package envelope

import (
	"crypto/subtle"
	"fmt"
	"unsafe"

	commonpb "go.temporal.io/api/common/v1"
)

// Envelope is a parsed kms-envelope-v1 payload: what it names and what it
// holds, not yet decrypted. The byte slices alias the payload's own.
type Envelope struct {
	// KeyARN is the ARN of the KMS key that wrapped the data key.
	KeyARN string
	// WrappedKey is the data key as KMS wrapped it (a CiphertextBlob).
	WrappedKey []byte
	// ContextJSON is the encryption-context metadata value, nil if absent.
	ContextJSON []byte

	salt       []byte
	commitment []byte
	ciphertext []byte
	aad        string // also KeyIdentity, and holds KeyARN
}

// Parse reads the envelope of p without decrypting anything.
//
// It returns ErrNotEncrypted for a payload that is not binary/encrypted
// or has no encryption-format (one this format did not produce),
// ErrUnsupportedFormat for another encryption-format, and ErrMalformed for
// a kms-envelope-v1 payload whose fields are missing or out of bounds. It
// does not parse the encryption context; EncryptionContext does, when the
// context is needed.
func Parse(p *commonpb.Payload) (*Envelope, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: payload is nil", ErrMalformed)
	}
	md := p.GetMetadata()
	format, hasFormat := md[MetadataFormat]
	if string(md[MetadataEncoding]) != EncodingEncrypted || !hasFormat {
		return nil, ErrNotEncrypted
	}
	if string(format) != Format {
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedFormat, truncate(format))
	}
	keyARN := md[MetadataKeyID]
	e := &Envelope{
		WrappedKey:  md[MetadataDataKey],
		ContextJSON: md[MetadataContext],
	}
	if err := checkFields(keyARN, e.WrappedKey, e.ContextJSON); err != nil {
		return nil, err
	}
	if ctx, ok := md[MetadataContext]; ok && len(ctx) == 0 {
		return nil, fmt.Errorf("%w: %s is present but empty", ErrMalformed, MetadataContext)
	}
	if len(p.Data) < Overhead {
		return nil, fmt.Errorf("%w: data is %d bytes, shorter than the %d-byte minimum", ErrMalformed, len(p.Data), Overhead)
	}
	e.salt = p.Data[:SaltSize]
	e.commitment = p.Data[SaltSize : SaltSize+CommitmentSize]
	e.ciphertext = p.Data[SaltSize+CommitmentSize:]
	e.aad = additionalData(keyARN, e.WrappedKey, e.ContextJSON)
	e.KeyARN = e.aad[keyARNInAAD : keyARNInAAD+len(keyARN)]
	return e, nil
}

// EncryptionContext parses the encryption context, the map KMS must be
// given to unwrap the data key. It is nil when the payload has none, and
// ErrMalformed unless the field is a JSON object of strings in the
// canonical encoding (see MarshalContext).
func (e *Envelope) EncryptionContext() (map[string]string, error) {
	if e.ContextJSON == nil {
		return nil, nil
	}
	return parseContext(e.ContextJSON)
}

// KeyIdentity returns a string that identifies the data key this payload
// needs together with the master key and context it is bound to: equal
// for two payloads exactly when their key ARN, wrapped key and context
// are equal. It suits a cache of unwrapped data keys.
func (e *Envelope) KeyIdentity() string {
	return e.aad
}

// Open checks the key commitment and decrypts the envelope with dataKey,
// the data key KMS unwrapped from WrappedKey, and returns the original
// payload. It returns ErrAuthentication if the payload was altered or
// dataKey is not its data key.
func (e *Envelope) Open(dataKey []byte) (*commonpb.Payload, error) {
	if len(dataKey) != DataKeySize {
		return nil, fmt.Errorf("envelope: data key is %d bytes, want %d", len(dataKey), DataKeySize)
	}
	aead, commitment, err := derive(dataKey, e.salt)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(commitment[:], e.commitment) != 1 {
		return nil, fmt.Errorf("%w: key commitment does not match", ErrAuthentication)
	}
	plaintext, err := aead.Open(nil, zeroNonce[:], e.ciphertext, readOnlyBytes(e.aad))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAuthentication, err)
	}
	p, err := unmarshalPayload(plaintext)
	if err != nil {
		// Authentic but not a payload: the sealer was broken, not the
		// transport.
		return nil, fmt.Errorf("%w: decrypted data is not a payload: %v", ErrMalformed, err)
	}
	return p, nil
}

// readOnlyBytes returns the bytes of s without copying them, for the AAD
// argument of cipher.AEAD.Open, which only reads it: copying would cost an
// allocation per payload. The result must never be written to.
func readOnlyBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// truncate keeps an unexpected metadata value short enough to put in an
// error message.
func truncate(b []byte) string {
	const max = 64
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
