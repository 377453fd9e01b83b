// Package kmstest provides an in-memory KMS for tests and examples, in
// the way net/http/httptest provides a server.
//
// It implements kms.API with real cryptography (each key wraps data keys
// with AES-256-GCM, bound to the encryption context) and the behaviour of
// AWS KMS that kmscodec relies on: ARNs, aliases, context binding,
// disabled keys, and errors of the AWS SDK's exception types. Every call
// is counted, so a test can assert that a request was refused before it
// reached KMS, and any operation can be made to fail. Handler serves the
// same KMS over HTTP in the AWS JSON 1.1 protocol, for a program that
// builds its own KMS client and only takes an endpoint.
//
// It is not a KMS emulator: use it to test code built on kmscodec without
// AWS credentials, and the real KMS (or an emulator) for integration
// tests. Where it simplifies, it does so on the side of refusing: a
// wrapped key that was not made by the key a Decrypt names fails with
// InvalidCiphertextException, whether it is garbage or the wrapped key of
// another key (for which AWS KMS says IncorrectKeyException).
//
// # Key material and wrapped keys
//
// A key's material is derived from its ARN alone, so a data key wrapped
// in one test run unwraps in the next, in another process, or by another
// KMS value holding the same ARN: payloads encrypted once can be committed
// as fixtures. The derivation and the layout of a wrapped key are fixed;
// changing either makes every recorded wrapped key undecryptable:
//
//   - master key: SHA-256("fakekms master key\x00" || ARN), used as an
//     AES-256-GCM key; for a multi-Region key (key ID "mrk-..."), the ARN
//     with its region left empty, so that its replicas, whose ARNs differ
//     only by region, share the material as in KMS;
//   - wrapped key (CiphertextBlob): the length of the ARN (one byte), the
//     ARN, a random 12-byte nonce, then the data key sealed under the
//     master key;
//   - additional data: the encryption context as encoding/json marshals
//     it (keys sorted), or nothing when the context is empty or absent,
//     which KMS treats as the same.
//
// The ARN travels in the clear, as the key ID does in a real KMS
// ciphertext blob, so that Decrypt can tell which key a wrapped key
// belongs to. Because anyone can derive the material, these keys protect
// nothing: they are for tests only.
//
// # Regions
//
// A KMS made by New holds keys of any region. One made by NewInRegion is
// the KMS of one region, as a regional KMS endpoint is: it holds only
// that region's keys, so a call naming another region's key fails with
// NotFoundException, and its call counts are that region's. Give each
// region its own value (and its own Handler), make a multi-Region key in
// one with CreateMultiRegionKey, and replicate it to the others with
// ReplicateKey.
package kmstest

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	smithy "github.com/aws/smithy-go"

	"github.com/temporal-kms/kmscodec/kms"
)

// Region and Account appear in the ARNs of the keys that CreateKey makes.
const (
	Region  = "us-east-1"
	Account = "111122223333"
)

// masterKeyLabel separates this package's key derivation from any other
// use of SHA-256 over an ARN. It is part of every wrapped key this
// package has made, recorded fixtures included, so it must not change.
const masterKeyLabel = "fakekms master key\x00"

// maxARN is the longest ARN a wrapped key can name: its length is stored
// in one byte.
const maxARN = 255

// KMS is an in-memory key store. The zero value is not usable; call New.
// It is safe for concurrent use.
type KMS struct {
	region   string // "" for a KMS of every region
	mu       sync.Mutex
	keys     map[string]*key   // by key ARN
	ids      map[string]string // key ID (the part after "key/") to key ARN
	aliases  map[string]string // alias name to key ARN
	calls    map[string]int
	failWith map[string]error // operation to the error every call returns
	next     int
}

// key is one master key: its material, derived once, and its state.
type key struct {
	aead     cipher.AEAD
	disabled bool
}

var _ kms.API = (*KMS)(nil)

// New returns a KMS with no keys, which holds keys of any region.
func New() *KMS {
	return &KMS{
		keys:     map[string]*key{},
		ids:      map[string]string{},
		aliases:  map[string]string{},
		calls:    map[string]int{},
		failWith: map[string]error{},
	}
}

// NewInRegion returns a KMS with no keys that is the KMS of region alone:
// its keys are created in region, AddKey refuses another region's key,
// and a call naming another region's key fails with NotFoundException.
func NewInRegion(region string) *KMS {
	if region == "" {
		panic("kmstest: NewInRegion needs a region")
	}
	k := New()
	k.region = region
	return k
}

// Region returns the region of a KMS made by NewInRegion, "" for one made
// by New.
func (k *KMS) Region() string { return k.region }

// CreateKey makes a new symmetric single-Region key and returns its ARN,
// in the region of NewInRegion (default the constant Region). The ARNs
// are numbered in order of creation within this KMS, so, the material
// being derived from the ARN, the nth key of two KMS values is the same
// key.
func (k *KMS) CreateKey() string {
	return k.create("00000000-0000-4000-8000-%012d")
}

// CreateMultiRegionKey makes a new symmetric multi-Region primary key,
// numbered like CreateKey, and returns its ARN; ReplicateKey makes its
// replicas in other regions.
func (k *KMS) CreateMultiRegionKey() string {
	return k.create("mrk-00000000000040008000%010d")
}

func (k *KMS) create(keyIDFormat string) string {
	region := k.region
	if region == "" {
		region = Region
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for {
		k.next++
		arn := fmt.Sprintf("arn:aws:kms:%s:%s:key/"+keyIDFormat, region, Account, k.next)
		if _, taken := k.keys[arn]; !taken { // by AddKey
			k.add(arn)
			return arn
		}
	}
}

// ReplicateKey adds to replica, a KMS made by NewInRegion, the replica in
// its region of the multi-Region key keyARN, and returns the replica's
// ARN: keyARN with its region changed, sharing its material. It panics
// if keyARN is not a multi-Region key ARN or replica has no region:
// either is a mistake in the test.
func (k *KMS) ReplicateKey(keyARN string, replica *KMS) string {
	arn, ok := kms.ParseKeyARN(keyARN)
	if !ok || !arn.MultiRegion() || replica.region == "" {
		panic(fmt.Sprintf("kmstest: ReplicateKey(%q): not a multi-Region key ARN, or a replica KMS made without NewInRegion", keyARN))
	}
	if _, _, err := k.lockedResolve(keyARN); err != nil {
		panic(fmt.Sprintf("kmstest: ReplicateKey(%q): no such key in this KMS", keyARN))
	}
	replicaARN := arn.InRegion(replica.region).String()
	replica.AddKey(replicaARN)
	return replicaARN
}

func (k *KMS) lockedResolve(id string) (string, *key, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.resolve(id)
}

// AddKey adds an enabled key with the given ARN, for a test whose data
// (a fixture, a configuration) names its keys. Adding a key that exists
// changes nothing. It panics if keyARN is not a key ARN, is longer than
// a wrapped key can record (255 bytes), or, in a KMS made by NewInRegion,
// is in another region: each is a mistake in the test.
func (k *KMS) AddKey(keyARN string) {
	arn, ok := kms.ParseKeyARN(keyARN)
	if !ok || len(keyARN) > maxARN {
		panic(fmt.Sprintf("kmstest: AddKey(%q): not a key ARN of at most %d bytes", keyARN, maxARN))
	}
	if k.region != "" && arn.Region != k.region {
		panic(fmt.Sprintf("kmstest: AddKey(%q): not a key of this KMS's region %s", keyARN, k.region))
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.keys[keyARN]; !ok {
		k.add(keyARN)
	}
}

// add records a new key; k.mu is held.
func (k *KMS) add(arn string) {
	k.keys[arn] = &key{aead: masterKey(arn)}
	id := arn[strings.LastIndex(arn, "/")+1:]
	if _, ok := k.ids[id]; !ok { // the same ID in two regions: the first wins
		k.ids[id] = arn
	}
}

// SetAlias points alias (such as "alias/temporal") at the key keyARN,
// creating the alias or moving it.
func (k *KMS) SetAlias(alias, keyARN string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.aliases[alias] = keyARN
}

// Disable disables the key keyARN, as an operator can in KMS: from then
// on GenerateDataKey and Decrypt with it fail with DisabledException,
// while DescribeKey still describes it, as disabled.
func (k *KMS) Disable(keyARN string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if key, ok := k.keys[keyARN]; ok {
		key.disabled = true
	}
}

// FailWith makes every later call of op ("GenerateDataKey", "Decrypt",
// "DescribeKey") fail with err, for testing how callers handle KMS
// failures; nil restores normal service. Failed calls are still counted.
// Error makes an err that looks like one KMS returned.
func (k *KMS) FailWith(op string, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		delete(k.failWith, op)
		return
	}
	k.failWith[op] = err
}

// Calls returns how many times op ("GenerateDataKey", "Decrypt",
// "DescribeKey") was called, failed calls included.
func (k *KMS) Calls(op string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[op]
}

// TotalCalls returns how many calls of any operation were made, failed
// calls included: zero proves that nothing reached KMS.
func (k *KMS) TotalCalls() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, c := range k.calls {
		n += c
	}
	return n
}

// Error returns an error in the form the AWS SDK reports a KMS error
// it has no type for, for FailWith: code such as "ThrottlingException" or
// "AccessDeniedException". Over Handler, the client sees the code, and
// the SDK's own type where it has one.
func Error(code, message string) error {
	return &smithy.GenericAPIError{Code: code, Message: message, Fault: smithy.FaultClient}
}

// begin counts a call of op and returns the error FailWith set for it.
// k.mu is held.
func (k *KMS) begin(op string) error {
	k.calls[op]++
	return k.failWith[op]
}

// resolve finds the key that id names, as KMS does: a key ARN, a key ID,
// an alias name or an alias ARN. It does not check that the key is
// enabled. k.mu is held.
func (k *KMS) resolve(id string) (string, *key, error) {
	name := id
	if i := strings.Index(name, ":alias/"); i >= 0 {
		name = name[i+1:]
	}
	if arn, ok := k.aliases[name]; ok {
		name = arn
	}
	if arn, ok := k.ids[name]; ok {
		name = arn
	}
	if key, ok := k.keys[name]; ok {
		return name, key, nil
	}
	return "", nil, &types.NotFoundException{Message: aws.String(fmt.Sprintf("key %q does not exist", id))}
}

// enabled is resolve for the operations a disabled key refuses.
func (k *KMS) enabled(id string) (string, *key, error) {
	arn, key, err := k.resolve(id)
	if err == nil && key.disabled {
		return "", nil, &types.DisabledException{Message: aws.String(arn + " is disabled.")}
	}
	return arn, key, err
}

// GenerateDataKey returns a fresh 32-byte data key, in plaintext and
// wrapped by the named key under the encryption context.
func (k *KMS) GenerateDataKey(_ context.Context, in *awskms.GenerateDataKeyInput, _ ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
	arn, key, err := func() (string, *key, error) {
		k.mu.Lock()
		defer k.mu.Unlock()
		if err := k.begin("GenerateDataKey"); err != nil {
			return "", nil, err
		}
		return k.enabled(aws.ToString(in.KeyId))
	}()
	if err != nil {
		return nil, err
	}
	if in.KeySpec != types.DataKeySpecAes256 {
		return nil, &types.InvalidKeyUsageException{Message: aws.String("only AES_256 data keys are supported")}
	}
	plaintext := make([]byte, 32)
	rand.Read(plaintext)
	nonce := make([]byte, key.aead.NonceSize())
	rand.Read(nonce)
	blob := append([]byte{byte(len(arn))}, arn...)
	blob = append(blob, nonce...)
	blob = key.aead.Seal(blob, nonce, plaintext, contextAAD(in.EncryptionContext))
	return &awskms.GenerateDataKeyOutput{KeyId: aws.String(arn), Plaintext: plaintext, CiphertextBlob: blob}, nil
}

// Decrypt unwraps a data key. It fails with InvalidCiphertextException
// when the blob was not made by the named key or the context differs.
// KeyId may be left out, as KMS allows for symmetric keys: the key is
// then the one the blob names.
func (k *KMS) Decrypt(_ context.Context, in *awskms.DecryptInput, _ ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
	invalid := &types.InvalidCiphertextException{Message: aws.String("the ciphertext is invalid for this key and context")}
	owner, sealed, wellFormed := splitBlob(in.CiphertextBlob)
	arn, key, err := func() (string, *key, error) {
		k.mu.Lock()
		defer k.mu.Unlock()
		if err := k.begin("Decrypt"); err != nil {
			return "", nil, err
		}
		id := aws.ToString(in.KeyId)
		if id == "" {
			if !wellFormed {
				return "", nil, invalid
			}
			id = owner
		}
		return k.enabled(id)
	}()
	if err != nil {
		return nil, err
	}
	n := key.aead.NonceSize()
	// A multi-Region replica unwraps what any of its replicas wrapped.
	if !wellFormed || !kms.SameKeyARN(owner, arn) || len(sealed) < n {
		return nil, invalid
	}
	plaintext, err := key.aead.Open(nil, sealed[:n], sealed[n:], contextAAD(in.EncryptionContext))
	if err != nil {
		return nil, invalid
	}
	return &awskms.DecryptOutput{KeyId: aws.String(arn), Plaintext: plaintext, EncryptionAlgorithm: types.EncryptionAlgorithmSpecSymmetricDefault}, nil
}

// DescribeKey returns the ARN and state of the key that KeyId names.
func (k *KMS) DescribeKey(_ context.Context, in *awskms.DescribeKeyInput, _ ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.begin("DescribeKey"); err != nil {
		return nil, err
	}
	arn, key, err := k.resolve(aws.ToString(in.KeyId))
	if err != nil {
		return nil, err
	}
	state := types.KeyStateEnabled
	if key.disabled {
		state = types.KeyStateDisabled
	}
	return &awskms.DescribeKeyOutput{KeyMetadata: &types.KeyMetadata{
		Arn:      aws.String(arn),
		KeyId:    aws.String(arn[strings.LastIndex(arn, "/")+1:]),
		Enabled:  !key.disabled,
		KeyState: state,
	}}, nil
}

// splitBlob takes a wrapped key apart into the ARN it names and the
// nonce and sealed data key that follow.
func splitBlob(blob []byte) (arn string, sealed []byte, ok bool) {
	if len(blob) < 1 || len(blob) < 1+int(blob[0]) {
		return "", nil, false
	}
	n := int(blob[0])
	return string(blob[1 : 1+n]), blob[1+n:], true
}

// masterKey derives the material of the key arn (see the package doc).
func masterKey(arn string) cipher.AEAD {
	if a, ok := kms.ParseKeyARN(arn); ok && a.MultiRegion() {
		arn = a.InRegion("").String() // shared by every replica
	}
	sum := sha256.Sum256([]byte(masterKeyLabel + arn))
	block, err := aes.NewCipher(sum[:])
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

// contextAAD is the encryption context in a canonical form, the
// additional data of a wrapped key: encoding/json sorts map keys, so the
// order of the map does not matter. An absent and an empty context are
// the same, as in KMS.
func contextAAD(ctx map[string]string) []byte {
	if len(ctx) == 0 {
		return nil
	}
	b, _ := json.Marshal(ctx)
	return b
}

// Handler serves this KMS in the AWS JSON 1.1 protocol that the SDK's KMS
// client speaks, so a program pointed at it (through the client's
// BaseEndpoint, or kmscodec's --kms-endpoint) needs no change. It serves
// GenerateDataKey, Decrypt and DescribeKey; request signatures are not
// checked, since the point is the KMS behaviour, not AWS authentication.
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
	var badRequest error // the body is not the operation's input
	switch op {
	case "GenerateDataKey":
		var in awskms.GenerateDataKeyInput
		var o *awskms.GenerateDataKeyOutput
		if badRequest = json.Unmarshal(body, &in); badRequest == nil {
			if o, err = k.GenerateDataKey(r.Context(), &in); err == nil {
				out = map[string]any{"KeyId": o.KeyId, "Plaintext": o.Plaintext, "CiphertextBlob": o.CiphertextBlob}
			}
		}
	case "Decrypt":
		var in awskms.DecryptInput
		var o *awskms.DecryptOutput
		if badRequest = json.Unmarshal(body, &in); badRequest == nil {
			if o, err = k.Decrypt(r.Context(), &in); err == nil {
				out = map[string]any{"KeyId": o.KeyId, "Plaintext": o.Plaintext, "EncryptionAlgorithm": o.EncryptionAlgorithm}
			}
		}
	case "DescribeKey":
		var in awskms.DescribeKeyInput
		var o *awskms.DescribeKeyOutput
		if badRequest = json.Unmarshal(body, &in); badRequest == nil {
			if o, err = k.DescribeKey(r.Context(), &in); err == nil {
				md := o.KeyMetadata
				out = map[string]any{"KeyMetadata": map[string]any{"Arn": md.Arn, "KeyId": md.KeyId, "Enabled": md.Enabled, "KeyState": md.KeyState}}
			}
		}
	default:
		writeError(w, http.StatusBadRequest, "UnknownOperationException", "kmstest does not implement "+op)
		return
	}
	var apiErr smithy.APIError
	switch {
	case badRequest != nil:
		writeError(w, http.StatusBadRequest, "SerializationException", badRequest.Error())
		return
	case errors.As(err, &apiErr):
		writeError(w, http.StatusBadRequest, apiErr.ErrorCode(), apiErr.ErrorMessage())
		return
	case err != nil:
		// An error FailWith set that KMS would not send, such as
		// context.DeadlineExceeded: the nearest KMS has is a failure of
		// its own.
		writeError(w, http.StatusInternalServerError, "KMSInternalException", err.Error())
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

// writeError writes an error as KMS does: the code in X-Amzn-ErrorType
// and __type, from which the SDK picks the exception type.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"__type": code, "message": message})
	w.Write(b)
}
