package envelope

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	commonpb "go.temporal.io/api/common/v1"
)

// Header is what a sealed payload names in its metadata: the master key,
// the data key wrapped under it, and the KMS encryption context that was
// bound to the wrapped key.
type Header struct {
	// KeyARN is the ARN of the KMS key that wrapped the data key, as
	// GenerateDataKey returned it.
	KeyARN string
	// WrappedKey is the CiphertextBlob that GenerateDataKey returned.
	WrappedKey []byte
	// EncryptionContext is the context passed to GenerateDataKey; nil or
	// empty when none was.
	EncryptionContext map[string]string
}

// Key seals payloads under one data key. It is safe for concurrent use.
//
// Building a Key validates the header once and precomputes the metadata
// values and the additional authenticated data that every payload sealed
// under this data key shares, so Seal does only per-payload work.
type Key struct {
	dataKey     []byte
	keyARN      []byte
	wrappedKey  []byte
	contextJSON []byte
	identity    string // the additional authenticated data
	aad         []byte // identity's bytes
}

// NewKey returns a Key that seals under dataKey, a 32-byte AES-256 data
// key in plaintext, and names h in each payload's metadata.
func NewKey(dataKey []byte, h Header) (*Key, error) {
	if len(dataKey) != DataKeySize {
		return nil, fmt.Errorf("envelope: data key is %d bytes, want %d", len(dataKey), DataKeySize)
	}
	contextJSON, err := MarshalContext(h.EncryptionContext)
	if err != nil {
		return nil, err
	}
	keyARN := []byte(h.KeyARN)
	if err := checkFields(keyARN, h.WrappedKey, contextJSON); err != nil {
		return nil, err
	}
	k := &Key{
		dataKey:     bytes.Clone(dataKey),
		keyARN:      keyARN,
		wrappedKey:  bytes.Clone(h.WrappedKey),
		contextJSON: contextJSON,
	}
	k.identity = additionalData(k.keyARN, k.wrappedKey, k.contextJSON)
	k.aad = []byte(k.identity)
	return k, nil
}

// Seal encrypts p, metadata and all, into a new kms-envelope-v1 payload.
// p is not modified.
//
// random supplies the 32-byte salt; nil means crypto/rand, which is what
// every caller but a test vector wants.
func (k *Key) Seal(p *commonpb.Payload, random io.Reader) (*commonpb.Payload, error) {
	// One buffer holds salt, commitment, and the marshalled payload, which
	// is then encrypted in place and gains its tag: no copy of the
	// plaintext is made.
	data, err := marshalForSeal(p)
	if err != nil {
		return nil, fmt.Errorf("envelope: marshal payload: %w", err)
	}
	salt := data[:SaltSize]
	if random == nil {
		rand.Read(salt)
	} else if _, err := io.ReadFull(random, salt); err != nil {
		return nil, fmt.Errorf("envelope: read salt: %w", err)
	}
	aead, commitment, err := derive(k.dataKey, salt)
	if err != nil {
		return nil, err
	}
	copy(data[SaltSize:], commitment[:])
	header := SaltSize + CommitmentSize
	data = aead.Seal(data[:header], zeroNonce[:], data[header:], k.aad)

	// The metadata values are shared by every payload of this data key.
	// Protobuf treats bytes fields as immutable, and so do the Temporal SDK
	// and server, so sharing saves three copies per payload.
	md := make(map[string][]byte, 5)
	md[MetadataEncoding] = encodingEncrypted
	md[MetadataFormat] = formatValue
	md[MetadataKeyID] = k.keyARN
	md[MetadataDataKey] = k.wrappedKey
	if len(k.contextJSON) > 0 {
		md[MetadataContext] = k.contextJSON
	}
	return &commonpb.Payload{Metadata: md, Data: data}, nil
}

var (
	encodingEncrypted = []byte(EncodingEncrypted)
	formatValue       = []byte(Format)
	zeroNonce         [12]byte
)

// checkFields enforces the limits that both sealing and parsing apply.
func checkFields(keyARN, wrappedKey, contextJSON []byte) error {
	switch {
	case len(keyARN) == 0:
		return fmt.Errorf("%w: %s is missing or empty", ErrMalformed, MetadataKeyID)
	case len(keyARN) > MaxKeyARNSize:
		return fmt.Errorf("%w: %s is %d bytes, over the %d-byte limit", ErrMalformed, MetadataKeyID, len(keyARN), MaxKeyARNSize)
	case !utf8.Valid(keyARN):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrMalformed, MetadataKeyID)
	case len(wrappedKey) == 0:
		return fmt.Errorf("%w: %s is missing or empty", ErrMalformed, MetadataDataKey)
	case len(wrappedKey) > MaxWrappedKeySize:
		return fmt.Errorf("%w: %s is %d bytes, over the %d-byte limit", ErrMalformed, MetadataDataKey, len(wrappedKey), MaxWrappedKeySize)
	case len(contextJSON) > MaxContextSize:
		return fmt.Errorf("%w: %s is %d bytes, over the %d-byte limit", ErrMalformed, MetadataContext, len(contextJSON), MaxContextSize)
	}
	return nil
}

// additionalData binds the ciphertext to the key ARN, the wrapped key and
// the context: "kms-envelope-v1", then each field as a 4-byte big-endian
// length and its bytes. Length prefixes keep two different headers from
// ever producing the same bytes.
//
// It is a string because it also serves as the identity of the data key
// (the key of the decryption cache) and holds the key ARN that Parse
// returns, all in one allocation.
func additionalData(keyARN, wrappedKey, contextJSON []byte) string {
	var aad strings.Builder
	aad.Grow(len(Format) + 12 + len(keyARN) + len(wrappedKey) + len(contextJSON))
	aad.WriteString(Format)
	for _, field := range [][]byte{keyARN, wrappedKey, contextJSON} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(field)))
		aad.Write(n[:])
		aad.Write(field)
	}
	return aad.String()
}

// keyARNInAAD is where additionalData puts the key ARN.
const keyARNInAAD = len(Format) + 4

// Identity returns the same string as Envelope.KeyIdentity for every
// payload this Key seals, so a caller can put the data key into a
// decryption cache before any payload exists.
func (k *Key) Identity() string {
	return k.identity
}
