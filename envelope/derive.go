package envelope

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
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
// runs for every payload, so the three HMACs are computed on the stack
// (hmacKey) rather than with crypto/hmac, which allocates a dozen objects
// per keying. TestDeriveMatchesHKDF checks the result against
// crypto/hkdf.
func derive(dataKey, salt []byte) (cipher.AEAD, [CommitmentSize]byte, error) {
	extract := newHMACKey(salt)
	prk := extract.sum(dataKey) // HKDF-Extract(salt, IKM = data key)
	expand := newHMACKey(prk[:])
	payloadKey := expand.sum(infoPayloadKeyBlock)
	commitment := expand.sum(infoCommitmentBlock)
	aead, err := newAEAD(payloadKey[:])
	clear(payloadKey[:])
	clear(prk[:])
	clear(expand.ipad[:])
	clear(expand.opad[:])
	if err != nil {
		return nil, commitment, err
	}
	return aead, commitment, nil
}

// hmacKey is an HMAC-SHA256 (RFC 2104) key of at most one SHA-256 block
// (64 bytes), zero-padded to the block and XORed with each pad:
//
//	HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m))
//
// It lives on the stack, and so do both hashes of sum, where crypto/hmac
// allocates a dozen objects per key.
type hmacKey struct {
	ipad, opad [sha256.BlockSize]byte
}

var ipad, opad = bytes.Repeat([]byte{0x36}, sha256.BlockSize), bytes.Repeat([]byte{0x5c}, sha256.BlockSize)

func newHMACKey(key []byte) hmacKey {
	if len(key) > sha256.BlockSize {
		panic("envelope: HMAC key longer than a block")
	}
	var k hmacKey
	copy(k.ipad[:], ipad)
	copy(k.opad[:], opad)
	subtle.XORBytes(k.ipad[:], k.ipad[:], key)
	subtle.XORBytes(k.opad[:], k.opad[:], key)
	return k
}

// sum returns the HMAC of msg, which must be at most one block long.
func (k *hmacKey) sum(msg []byte) [sha256.Size]byte {
	if len(msg) > sha256.BlockSize {
		panic("envelope: HMAC message longer than a block")
	}
	var buf [2 * sha256.BlockSize]byte
	copy(buf[:], k.ipad[:])
	n := copy(buf[sha256.BlockSize:], msg)
	inner := sha256.Sum256(buf[:sha256.BlockSize+n])
	copy(buf[:], k.opad[:])
	n = copy(buf[sha256.BlockSize:], inner[:])
	return sha256.Sum256(buf[:sha256.BlockSize+n])
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
