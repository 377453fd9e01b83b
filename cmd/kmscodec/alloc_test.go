package main

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// allocBytesPerInputByte bounds what decode and keys allocate for each
// byte of their input, beyond what they allocate for an empty document.
// Reading a document into a tree, reading each payload as a protobuf
// message and writing the document back each cost a few times the
// input; a path string per payload that repeats its ancestors' keys
// costs the input's size for every payload.
const allocBytesPerInputByte = 64

// encryptedEncodingBase64 is "binary/encrypted": a payload so marked
// but without the kms-envelope-v1 metadata fails to decrypt before KMS
// is asked.
const encryptedEncodingBase64 = "YmluYXJ5L2VuY3J5cHRlZA=="

// hostileDocument is a JSON document shaped to make a walk that copies
// the path of every value allocate with the square of its size: objects
// nested depth levels deep under keys keyLen bytes long, a payload
// beside every nested object (deep), then width payloads in an array at
// the bottom (wide). Payloads carry encoding.
func hostileDocument(depth, keyLen, width int, encoding string) []byte {
	payload := `{"metadata":{"encoding":"` + encoding + `"}}`
	key := strings.Repeat("k", keyLen)
	var b bytes.Buffer
	for range depth {
		b.WriteString(`{"p":` + payload + `,"` + key + `":`)
	}
	b.WriteByte('[')
	for i := range width {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(payload)
	}
	b.WriteByte(']')
	b.WriteString(strings.Repeat("}", depth))
	return b.Bytes()
}

// TestDecodeAndKeysAllocateInProportionToTheInput: whatever the shape of
// a document, nested deep under long keys or holding thousands of
// payloads below such nesting, kmscodec decode and keys allocate a
// bounded multiple of its size, so a crafted file of a hundred
// kilobytes cannot make them take a hundred megabytes.
func TestDecodeAndKeysAllocateInProportionToTheInput(t *testing.T) {
	fake := kmstest.New()
	fake.AddKey(newKeyARN)
	kmsServer := httptest.NewServer(fake.Handler())
	defer kmsServer.Close()
	setFakeAWSEnv(t)

	const (
		notEncrypted = "YQ==" // "a": passed through as it is
		depth        = maxDepth - 12
	)
	shapes := []struct {
		name string
		doc  []byte
	}{
		{"deep: a payload on each of 500 levels under 200-byte keys", hostileDocument(depth, 200, 0, notEncrypted)},
		{"deep and wide: 2,500 payloads under 500 levels of 100-byte keys", hostileDocument(depth, 100, 2500, notEncrypted)},
		{"deep and wide, every payload failing", hostileDocument(depth, 100, 2500, encryptedEncodingBase64)},
	}
	commands := []struct {
		name string
		args []string
	}{
		{"decode", []string{"decode", "--keep-going", "--kms-endpoint", kmsServer.URL, "--decrypt-key-id", newKeyARN}},
		{"keys", []string{"keys"}},
	}
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(empty, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range commands {
		baseline := commandAllocation(t, append(cmd.args, empty))
		for _, shape := range shapes {
			t.Run(cmd.name+"/"+shape.name, func(t *testing.T) {
				file := filepath.Join(dir, "doc.json")
				if err := os.WriteFile(file, shape.doc, 0o600); err != nil {
					t.Fatal(err)
				}
				allocated := commandAllocation(t, append(cmd.args, file)) - min(baseline, commandAllocation(t, append(cmd.args, empty)))
				t.Logf("%d-byte document: %.1f MB allocated, %.0f bytes per input byte",
					len(shape.doc), float64(allocated)/1e6, float64(allocated)/float64(len(shape.doc)))
				if bound := allocBytesPerInputByte * uint64(len(shape.doc)); allocated > bound {
					t.Errorf("kmscodec %s allocated %d bytes for a %d-byte document, over %d", cmd.name, allocated, len(shape.doc), bound)
				}
			})
		}
	}
}

// commandAllocation runs kmscodec in this process and returns how many
// heap bytes it allocated.
func commandAllocation(t *testing.T, args []string) uint64 {
	t.Helper()
	var stdout, stderr bytes.Buffer
	var code int
	allocated := allocatedBy(func() {
		code = run(args, strings.NewReader(""), &stdout, &stderr, func(string) (string, bool) { return "", false })
	})
	if code != exitOK && !strings.Contains(stderr.String(), "could not be decrypted") {
		t.Fatalf("kmscodec %s: exit status %d\n%s", strings.Join(args, " "), code, stderr.String())
	}
	return allocated
}

// setFakeAWSEnv gives the AWS SDK credentials that sign requests to a
// fake KMS and keeps it from reading anything real.
func setFakeAWSEnv(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIDFAKEFAKEFAKEFAKE",
		"AWS_SECRET_ACCESS_KEY":       "fake-secret",
		"AWS_REGION":                  "us-east-1",
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "no-aws-credentials"),
	} {
		t.Setenv(k, v)
	}
}
