// Package kmstest provides an in-memory KMS for tests and examples, in
// the way net/http/httptest provides a server.
//
// It implements kms.API with real cryptography (each key wraps data keys
// with AES-256-GCM, bound to the encryption context) and the behaviour of
// AWS KMS that kmscodec relies on: ARNs, aliases, context binding, and
// errors of the AWS SDK's exception types. It is not a KMS emulator: use
// it to test code built on kmscodec without AWS credentials, and the real
// KMS (or an emulator) for integration tests.
package kmstest

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/temporal-kms/kmscodec/kms"
)

// Region and Account appear in the ARNs of the keys this KMS creates.
const (
	Region  = "us-east-1"
	Account = "111122223333"
)

// KMS is an in-memory key store. The zero value is not usable; call New.
type KMS struct {
	mu      sync.Mutex
	keys    map[string]cipher.AEAD // by key ARN
	aliases map[string]string      // alias name to key ARN
	calls   map[string]int
	next    int
}

var _ kms.API = (*KMS)(nil)

// New returns a KMS with no keys.
func New() *KMS {
	return &KMS{keys: map[string]cipher.AEAD{}, aliases: map[string]string{}, calls: map[string]int{}}
}

// CreateKey makes a new symmetric key and returns its ARN.
func (k *KMS) CreateKey() string {
	secret := make([]byte, 32)
	rand.Read(secret)
	block, _ := aes.NewCipher(secret)
	aead, _ := cipher.NewGCM(block)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.next++
	arn := fmt.Sprintf("arn:aws:kms:%s:%s:key/00000000-0000-4000-8000-%012d", Region, Account, k.next)
	k.keys[arn] = aead
	return arn
}

// SetAlias points alias (such as "alias/temporal") at the key keyARN,
// creating the alias or moving it.
func (k *KMS) SetAlias(alias, keyARN string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.aliases[alias] = keyARN
}

// Calls returns how many times op ("GenerateDataKey", "Decrypt",
// "DescribeKey") was called, failed calls included.
func (k *KMS) Calls(op string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[op]
}

// resolve finds the key that id names, as KMS does: a key ARN, a key ID,
// an alias name or an alias ARN.
func (k *KMS) resolve(op, id string) (string, cipher.AEAD, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls[op]++
	if i := strings.Index(id, ":alias/"); i >= 0 {
		id = id[i+1:]
	}
	if arn, ok := k.aliases[id]; ok {
		id = arn
	}
	for arn, aead := range k.keys {
		if id == arn || strings.HasSuffix(arn, ":key/"+id) {
			return arn, aead, nil
		}
	}
	return "", nil, &types.NotFoundException{Message: aws.String(fmt.Sprintf("key %q does not exist", id))}
}

// GenerateDataKey returns a fresh 32-byte data key, in plaintext and
// wrapped by the named key under the encryption context.
func (k *KMS) GenerateDataKey(_ context.Context, in *awskms.GenerateDataKeyInput, _ ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
	arn, aead, err := k.resolve("GenerateDataKey", aws.ToString(in.KeyId))
	if err != nil {
		return nil, err
	}
	if in.KeySpec != types.DataKeySpecAes256 {
		return nil, &types.InvalidKeyUsageException{Message: aws.String("only AES_256 data keys are supported")}
	}
	plaintext := make([]byte, 32)
	rand.Read(plaintext)
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	blob := append([]byte(arn+"\x00"), nonce...)
	blob = aead.Seal(blob, nonce, plaintext, contextBytes(in.EncryptionContext))
	return &awskms.GenerateDataKeyOutput{KeyId: aws.String(arn), Plaintext: plaintext, CiphertextBlob: blob}, nil
}

// Decrypt unwraps a data key. It fails with InvalidCiphertextException
// when the blob was not made by the named key or the context differs.
func (k *KMS) Decrypt(_ context.Context, in *awskms.DecryptInput, _ ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
	arn, aead, err := k.resolve("Decrypt", aws.ToString(in.KeyId))
	if err != nil {
		return nil, err
	}
	invalid := &types.InvalidCiphertextException{Message: aws.String("the ciphertext is invalid for this key and context")}
	owner, rest, ok := bytes.Cut(in.CiphertextBlob, []byte{0})
	if !ok || string(owner) != arn || len(rest) < aead.NonceSize() {
		return nil, invalid
	}
	plaintext, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], contextBytes(in.EncryptionContext))
	if err != nil {
		return nil, invalid
	}
	return &awskms.DecryptOutput{KeyId: aws.String(arn), Plaintext: plaintext}, nil
}

// DescribeKey returns the ARN of the key that KeyId names.
func (k *KMS) DescribeKey(_ context.Context, in *awskms.DescribeKeyInput, _ ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error) {
	arn, _, err := k.resolve("DescribeKey", aws.ToString(in.KeyId))
	if err != nil {
		return nil, err
	}
	return &awskms.DescribeKeyOutput{KeyMetadata: &types.KeyMetadata{
		Arn:     aws.String(arn),
		KeyId:   aws.String(arn[strings.LastIndex(arn, "/")+1:]),
		Enabled: true,
	}}, nil
}

// contextBytes is an unambiguous encoding of an encryption context, the
// additional data of a wrapped key: the order of the map does not matter.
func contextBytes(ctx map[string]string) []byte {
	names := make([]string, 0, len(ctx))
	for n := range ctx {
		names = append(names, n)
	}
	sort.Strings(names)
	var b []byte
	for _, n := range names {
		for _, s := range []string{n, ctx[n]} {
			b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
			b = append(b, s...)
		}
	}
	return b
}
