package envelope

import (
	"crypto/aes"
	"crypto/cipher"
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
//
// Both outputs are one hash block long, so HKDF-Expand (RFC 5869 section
// 2.3) is a single HMAC of info || 0x01 under the pseudorandom key. This
// runs for every payload, so the three HMACs are computed by hmacSHA256
// on the stack rather than with crypto/hmac, which allocates a dozen
// objects per keying. TestDeriveMatchesHKDF checks the result against
// crypto/hkdf.
func derive(dataKey, salt []byte) (cipher.AEAD, [CommitmentSize]byte, error) {
	prk := hmacSHA256(salt, dataKey) // HKDF-Extract(salt, IKM = data key)
	payloadKey := hmacSHA256(prk[:], infoPayloadKeyBlock)
	commitment := hmacSHA256(prk[:], infoCommitmentBlock)
	aead, err := newAEAD(payloadKey[:])
	clear(payloadKey[:])
	clear(prk[:])
	if err != nil {
		return nil, commitment, err
	}
	return aead, commitment, nil
}

// hmacSHA256 is HMAC-SHA256 (RFC 2104) of msg under key, for the short
// keys and messages derive has: key and msg at most one SHA-256 block
// (64 bytes) each. Both hashes run over one stack buffer:
//
//	HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m))
//
// with K zero-padded to the block size.
func hmacSHA256(key, msg []byte) [sha256.Size]byte {
	const blockSize = 64
	if len(key) > blockSize || len(msg) > blockSize {
		panic("envelope: hmacSHA256 input longer than a block")
	}
	var buf [2 * blockSize]byte
	copy(buf[:], key)
	for i := range blockSize {
		buf[i] ^= 0x36 // ipad
	}
	n := copy(buf[blockSize:], msg)
	inner := sha256.Sum256(buf[:blockSize+n])
	for i := range blockSize {
		buf[i] ^= 0x36 ^ 0x5c // undo ipad, apply opad
	}
	n = copy(buf[blockSize:], inner[:])
	mac := sha256.Sum256(buf[:blockSize+n])
	clear(buf[:])
	return mac
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("envelope: aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("envelope: gcm: %w", err)
	}
	return aead, nil
}

// The HKDF-Expand input of the first (and only) output block: info, then
// the block counter 0x01.
var (
	infoPayloadKeyBlock = []byte(infoPayloadKey + "\x01")
	infoCommitmentBlock = []byte(infoCommitment + "\x01")
)
