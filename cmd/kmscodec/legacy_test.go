package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// sealLegacy writes p in the static-key layout of Temporal's encryption
// samples under key, named keyID, with a fixed nonce (tests only).
func sealLegacy(t *testing.T, keyID string, key []byte, p *commonpb.Payload) *commonpb.Payload {
	t.Helper()
	plaintext, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 12)
	return &commonpb.Payload{
		Metadata: map[string][]byte{"encoding": []byte("binary/encrypted"), "encryption-key-id": []byte(keyID)},
		Data:     gcm.Seal(nonce, nonce, plaintext, nil),
	}
}

func legacyCodec(t *testing.T, args ...string) (*codec.Codec, error) {
	t.Helper()
	var l legacyFlags
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	l.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	fake := kmstest.New()
	opts := codec.Options{KMS: fake, KeyID: fake.CreateKey(), DisableEncryption: true}
	if err := l.apply(&opts); err != nil {
		return nil, err
	}
	return codec.New(opts)
}

func TestLegacyKeyFileLetsTheCodecDecodeTheSamplesPayloads(t *testing.T) {
	key := bytes.Repeat([]byte{0x5a}, 32)
	path := filepath.Join(t.TempDir(), "legacy.json")
	if err := os.WriteFile(path, []byte(`{"sample-key": "`+base64.StdEncoding.EncodeToString(key)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	in := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"old"`)}

	c, err := legacyCodec(t, "--legacy-key-file", path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Decode([]*commonpb.Payload{sealLegacy(t, "sample-key", key, in)})
	if err != nil || !proto.Equal(out[0], in) {
		t.Fatalf("decoded %v, %v", out, err)
	}
	_, err = c.Decode([]*commonpb.Payload{sealLegacy(t, "other-key", key, in)})
	if !errors.Is(err, codec.ErrLegacyKeyUnknown) || !strings.Contains(err.Error(), `"other-key"`) {
		t.Fatalf("a key ID not in the file: %v", err)
	}

	// Without the flag the payload passes through, still sealed.
	c, err = legacyCodec(t)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.Decode([]*commonpb.Payload{sealLegacy(t, "sample-key", key, in)}); err != nil || proto.Equal(out[0], in) {
		t.Fatalf("without --legacy-key-file: %v", err)
	}
}

func TestLegacyKeyFileReadableByOthersIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "legacy.json")
	if err := os.WriteFile(path, []byte(`{"k": "`+base64.StdEncoding.EncodeToString(make([]byte, 32))+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := legacyCodec(t, "--legacy-key-file", path); err == nil || !strings.Contains(err.Error(), "--legacy-key-file") || !strings.Contains(err.Error(), "0644") {
		t.Fatalf("got %v", err)
	}
}

// TestDecodeCommandReadsTheSamplesPayloadsWithALegacyKeyFile: kmscodec
// decode, as a user types it, opens a payload of the encryption samples
// with --legacy-key-file and leaves it sealed without.
func TestDecodeCommandReadsTheSamplesPayloadsWithALegacyKeyFile(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{0x5a}, 32)
	keyFile := filepath.Join(dir, "legacy.json")
	if err := os.WriteFile(keyFile, []byte(`{"sample-key": "`+base64.StdEncoding.EncodeToString(key)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	in := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"written-before-kmscodec"`)}
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: []*commonpb.Payload{sealLegacy(t, "sample-key", key, in)}})
	if err != nil {
		t.Fatal(err)
	}
	input := filepath.Join(dir, "payloads.json")
	if err := os.WriteFile(input, body, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(kmstest.New().Handler())
	t.Cleanup(srv.Close)
	setFakeAWSEnv(t)
	output := filepath.Join(dir, "decoded.json")
	args := []string{"decode", "--kms-endpoint", srv.URL, "--decrypt-key-id", oldKeyARN, "--output-file", output, input}

	if code, stderr := runKmscodec(append(args, "--legacy-key-file", keyFile)); code != exitOK {
		t.Fatalf("decode --legacy-key-file: exit %d: %s", code, stderr)
	}
	got, err := os.ReadFile(output)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), base64.StdEncoding.EncodeToString(in.Data)) {
		t.Errorf("the decoded file does not hold the payload's plaintext:\n%s", got)
	}

	// Without the key file the payload is not kmscodec's: it is left as it
	// was, still sealed.
	if code, stderr := runKmscodec(args); code != exitOK {
		t.Fatalf("decode without --legacy-key-file: exit %d: %s", code, stderr)
	}
	if got, err = os.ReadFile(output); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(got), base64.StdEncoding.EncodeToString(in.Data)) {
		t.Errorf("without --legacy-key-file the payload was opened:\n%s", got)
	}
}
