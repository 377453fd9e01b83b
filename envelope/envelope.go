// Package envelope implements kms-envelope-v1, the wire format in which
// kmscodec stores an encrypted Temporal payload.
//
// The functions here are pure: they take a plaintext data key that the
// caller got from KMS and never talk to KMS themselves. A sealed payload
// carries, in its metadata, the ARN of the master key and the data key
// wrapped under it, so that any holder of kms:Decrypt on that key can open
// it. docs/FORMAT.md specifies the format; testdata/ holds its test vectors.
//
// Use [NewKey] once per data key and [Key.Seal] for each payload; use
// [Parse] to read a payload's envelope without any key (to learn which
// master key and data key it needs) and [Envelope.Open] to decrypt it.
package envelope

import (
	"errors"
)

// Format is the value of the encryption-format metadata field.
const Format = "kms-envelope-v1"

// Metadata field names and values of a sealed payload.
const (
	MetadataEncoding  = "encoding"
	MetadataFormat    = "encryption-format"
	MetadataKeyID     = "encryption-key-id"
	MetadataDataKey   = "encryption-data-key"
	MetadataContext   = "encryption-context"
	EncodingEncrypted = "binary/encrypted"
)

// Sizes of the fixed parts of the format, in bytes.
const (
	DataKeySize    = 32
	SaltSize       = 32
	CommitmentSize = 32
	TagSize        = 16
	// Overhead is how much longer data is than the protobuf encoding of
	// the input payload.
	Overhead = SaltSize + CommitmentSize + TagSize
)

// Limits on the metadata fields. A payload beyond them is malformed: they
// bound the work and memory an untrusted payload can ask for, and are far
// above what KMS produces (an AWS wrapped data key is under 200 bytes).
const (
	MaxKeyARNSize     = 2 << 10
	MaxWrappedKeySize = 4 << 10
	MaxContextSize    = 8 << 10
)

// HKDF info strings (ASCII) for the two values derived from a data key.
const (
	infoPayloadKey = Format + " derive"
	infoCommitment = Format + " commit"
)

var (
	// ErrNotEncrypted is returned by Parse for a payload this format did
	// not produce: its encoding is not binary/encrypted or it has no
	// encryption-format. A codec passes such payloads through unchanged.
	ErrNotEncrypted = errors.New("envelope: payload is not encrypted")

	// ErrUnsupportedFormat means the payload is marked binary/encrypted
	// with an encryption-format other than kms-envelope-v1. It is never
	// passed through: it was encrypted by something this version cannot
	// read.
	ErrUnsupportedFormat = errors.New("envelope: unsupported encryption format")

	// ErrMalformed means the payload claims to be kms-envelope-v1 but a
	// field is missing, empty, too long or too short, or the encryption
	// context is not a JSON object of strings in the canonical encoding.
	ErrMalformed = errors.New("envelope: malformed encrypted payload")

	// ErrAuthentication means the key commitment or the AES-GCM tag did not
	// verify: the payload was altered, or it was sealed under another data
	// key.
	ErrAuthentication = errors.New("envelope: payload authentication failed")
)
