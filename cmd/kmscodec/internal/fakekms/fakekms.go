// Package fakekms is an in-memory stand-in for the three AWS KMS
// operations kmscodec uses, for the kmscodec command's tests.
//
// It is honest about what matters to a codec: a data key it wraps can be
// unwrapped only under the same master key and the same encryption
// context, a disabled key refuses to decrypt, and every call is counted
// so a test can assert that a request was refused before reaching KMS.
// It serves both as a kms.API value (for handler tests) and over HTTP in
// the KMS JSON protocol (for the command run as a user runs it, with
// --kms-endpoint).
//
// Master keys are derived from their ARNs, so a payload encrypted in one
// test run decrypts in the next: committed fixtures stay valid.
package fakekms

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	smithy "github.com/aws/smithy-go"
)

// KMS is the fake. The zero value is not usable; call New.
type KMS struct {
	mu       sync.Mutex
	keys     map[string]bool   // key ARN -> enabled
	aliases  map[string]string // alias name -> key ARN
	calls    map[string]int
	failWith map[string]error // operation -> error every call returns
}

// New returns a fake that holds the given key ARNs, all enabled.
func New(keyARNs ...string) *KMS {
	k := &KMS{
		keys:     map[string]bool{},
		aliases:  map[string]string{},
		calls:    map[string]int{},
		failWith: map[string]error{},
	}
	for _, arn := range keyARNs {
		k.keys[arn] = true
	}
	return k
}

// Alias points alias (such as "alias/temporal") at keyARN.
func (k *KMS) Alias(alias, keyARN string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.aliases[alias] = keyARN
}

// Disable makes keyARN refuse every operation, as a disabled KMS key does.
func (k *KMS) Disable(keyARN string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys[keyARN] = false
}

// FailWith makes every call of op ("Decrypt", "GenerateDataKey" or
// "DescribeKey") fail with err; nil restores normal service.
func (k *KMS) FailWith(op string, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		delete(k.failWith, op)
		return
	}
	k.failWith[op] = err
}

// Calls reports how many times op was called, failed calls included.
func (k *KMS) Calls(op string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[op]
}

// TotalCalls reports how many calls of any operation were made.
func (k *KMS) TotalCalls() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, c := range k.calls {
		n += c
	}
	return n
}

// begin counts a call of op and resolves keyID to an enabled key's ARN.
func (k *KMS) begin(op, keyID string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls[op]++
	if err := k.failWith[op]; err != nil {
		return "", err
	}
	arn := keyID
	if target, ok := k.aliases[keyID]; ok {
		arn = target
	}
	enabled, ok := k.keys[arn]
	switch {
	case !ok:
		return "", &types.NotFoundException{Message: aws.String("Key '" + keyID + "' does not exist")}
	case !enabled:
		return "", &types.DisabledException{Message: aws.String(arn + " is disabled.")}
	}
	return arn, nil
}

// GenerateDataKey returns a fresh 32-byte data key and its wrapping.
func (k *KMS) GenerateDataKey(_ context.Context, in *awskms.GenerateDataKeyInput, _ ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
	arn, err := k.begin("GenerateDataKey", aws.ToString(in.KeyId))
	if err != nil {
		return nil, err
	}
	if in.KeySpec != types.DataKeySpecAes256 && aws.ToInt32(in.NumberOfBytes) != 32 {
		return nil, &types.InvalidKeyUsageException{Message: aws.String("fake KMS only makes AES_256 data keys")}
	}
	plaintext := make([]byte, 32)
	rand.Read(plaintext)
	blob, err := wrap(arn, plaintext, in.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return &awskms.GenerateDataKeyOutput{KeyId: aws.String(arn), Plaintext: plaintext, CiphertextBlob: blob}, nil
}

// Decrypt unwraps a data key. Like KMS it needs the exact encryption
// context the key was wrapped with, and, when the caller names a key,
// refuses a blob wrapped by any other key.
func (k *KMS) Decrypt(_ context.Context, in *awskms.DecryptInput, _ ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
	named := aws.ToString(in.KeyId)
	blobARN, _, _ := splitBlob(in.CiphertextBlob)
	if named == "" {
		named = blobARN
	}
	arn, err := k.begin("Decrypt", named)
	if err != nil {
		return nil, err
	}
	if blobARN != arn {
		return nil, &types.IncorrectKeyException{Message: aws.String("The key ID in the request does not identify a CMK that can perform this operation.")}
	}
	plaintext, err := unwrap(arn, in.CiphertextBlob, in.EncryptionContext)
	if err != nil {
		return nil, &types.InvalidCiphertextException{}
	}
	return &awskms.DecryptOutput{KeyId: aws.String(arn), Plaintext: plaintext, EncryptionAlgorithm: types.EncryptionAlgorithmSpecSymmetricDefault}, nil
}

// DescribeKey returns the ARN of a key named by ARN or alias.
func (k *KMS) DescribeKey(_ context.Context, in *awskms.DescribeKeyInput, _ ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error) {
	arn, err := k.begin("DescribeKey", aws.ToString(in.KeyId))
	if err != nil {
		return nil, err
	}
	id := arn[strings.LastIndex(arn, "/")+1:]
	return &awskms.DescribeKeyOutput{KeyMetadata: &types.KeyMetadata{
		Arn: aws.String(arn), KeyId: aws.String(id), Enabled: true, KeyState: types.KeyStateEnabled,
	}}, nil
}

// The wrapped form is: ARN length (1 byte), ARN, 12-byte nonce, AES-GCM
// sealed data key. The ARN is in the clear as in a real KMS blob, so that
// Decrypt can tell which key a blob belongs to.
func wrap(arn string, plaintext []byte, ctx map[string]string) ([]byte, error) {
	if len(arn) > 255 {
		return nil, &types.InvalidKeyUsageException{Message: aws.String("key ARN too long for the fake")}
	}
	aead := masterKey(arn)
	blob := append([]byte{byte(len(arn))}, arn...)
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	blob = append(blob, nonce...)
	return aead.Seal(blob, nonce, plaintext, contextAAD(ctx)), nil
}

func splitBlob(blob []byte) (arn string, rest []byte, ok bool) {
	if len(blob) < 1 || len(blob) < 1+int(blob[0]) {
		return "", nil, false
	}
	n := int(blob[0])
	return string(blob[1 : 1+n]), blob[1+n:], true
}

func unwrap(arn string, blob []byte, ctx map[string]string) ([]byte, error) {
	_, rest, ok := splitBlob(blob)
	aead := masterKey(arn)
	if !ok || len(rest) < aead.NonceSize() {
		return nil, errors.New("short blob")
	}
	return aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], contextAAD(ctx))
}

func masterKey(arn string) cipher.AEAD {
	sum := sha256.Sum256([]byte("fakekms master key\x00" + arn))
	block, _ := aes.NewCipher(sum[:])
	aead, _ := cipher.NewGCM(block)
	return aead
}

// contextAAD is the encryption context in a canonical form: encoding/json
// sorts map keys. An absent and an empty context are the same, as in KMS.
func contextAAD(ctx map[string]string) []byte {
	if len(ctx) == 0 {
		return nil
	}
	b, _ := json.Marshal(ctx)
	return b
}

// Handler serves the fake in the AWS JSON 1.1 protocol that the KMS
// client speaks, so a command pointed at it with --kms-endpoint needs no
// change. Signatures are not checked.
func (k *KMS) Handler() http.Handler {
	return http.HandlerFunc(k.serveHTTP)
}

func (k *KMS) serveHTTP(w http.ResponseWriter, r *http.Request) {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "TrentService.")
	if r.Method != http.MethodPost || !ok {
		writeError(w, http.StatusBadRequest, "UnknownOperationException", "not a KMS request")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", "unreadable body")
		return
	}
	// Requests decode straight into the SDK's input types (their field
	// names are the wire names); responses are built by hand so that only
	// wire fields are sent.
	var out any
	switch op {
	case "GenerateDataKey":
		var in awskms.GenerateDataKeyInput
		var o *awskms.GenerateDataKeyOutput
		if err = json.Unmarshal(body, &in); err == nil {
			if o, err = k.GenerateDataKey(r.Context(), &in); err == nil {
				out = map[string]any{"KeyId": o.KeyId, "Plaintext": o.Plaintext, "CiphertextBlob": o.CiphertextBlob}
			}
		}
	case "Decrypt":
		var in awskms.DecryptInput
		var o *awskms.DecryptOutput
		if err = json.Unmarshal(body, &in); err == nil {
			if o, err = k.Decrypt(r.Context(), &in); err == nil {
				out = map[string]any{"KeyId": o.KeyId, "Plaintext": o.Plaintext, "EncryptionAlgorithm": o.EncryptionAlgorithm}
			}
		}
	case "DescribeKey":
		var in awskms.DescribeKeyInput
		var o *awskms.DescribeKeyOutput
		if err = json.Unmarshal(body, &in); err == nil {
			if o, err = k.DescribeKey(r.Context(), &in); err == nil {
				md := o.KeyMetadata
				out = map[string]any{"KeyMetadata": map[string]any{"Arn": md.Arn, "KeyId": md.KeyId, "Enabled": md.Enabled, "KeyState": md.KeyState}}
			}
		}
	default:
		writeError(w, http.StatusBadRequest, "UnknownOperationException", "fake KMS does not implement "+op)
		return
	}
	var apiErr smithy.APIError
	switch {
	case errors.As(err, &apiErr):
		writeError(w, http.StatusBadRequest, apiErr.ErrorCode(), apiErr.ErrorMessage())
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	b, err := json.Marshal(out)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "KMSInternalException", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Write(b)
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"__type": code, "message": message})
	w.Write(b)
}

// Error returns an error as KMS reports it, for FailWith: code such as
// "ThrottlingException" or "AccessDeniedException".
func Error(code, message string) error {
	return &smithy.GenericAPIError{Code: code, Message: message, Fault: smithy.FaultClient}
}
