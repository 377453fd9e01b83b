package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
)

// derive returns the AEAD for one payload and the key commitment, both
// from a single HKDF-Extract of the data key with the payload's salt.
//
// The payload key is unique to the payload (a fresh 32-byte salt), which
// is why a fixed all-zero nonce is safe: no key ever encrypts twice. The
// commitment binds the ciphertext to this one data key, which AES-GCM
// alone does not do.
func derive(dataKey, salt []byte) (cipher.AEAD, []byte, error) {
	prk, err := hkdf.Extract(sha256.New, dataKey, salt)
	if err != nil {
		return nil, nil, fmt.Errorf("envelope: hkdf extract: %w", err)
	}
	payloadKey, err := hkdf.Expand(sha256.New, prk, infoPayloadKey, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("envelope: hkdf expand: %w", err)
	}
	commitment, err := hkdf.Expand(sha256.New, prk, infoCommitment, CommitmentSize)
	if err != nil {
		return nil, nil, fmt.Errorf("envelope: hkdf expand: %w", err)
	}
	block, err := aes.NewCipher(payloadKey)
	if err != nil {
		return nil, nil, fmt.Errorf("envelope: aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, fmt.Errorf("envelope: gcm: %w", err)
	}
	return aead, commitment, nil
}
