package codec_test

import (
	"bytes"
	"fmt"
	"log"

	commonpb "go.temporal.io/api/common/v1"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// Migrating from the encryption samples' static-key codec: the samples'
// keys go to a LegacyStaticKeyDecoder, set as Options.Legacy. Histories
// written by the samples' codec still decode; everything written from
// now on is kms-envelope-v1, so the static key can be retired once those
// histories are gone. In production the keys come from LoadLegacyKeys or
// a secret store.
func ExampleNewLegacyStaticKeyDecoder() {
	staticKey := bytes.Repeat([]byte{0x42}, 32) // the samples' 32-byte AES key
	legacy, err := codec.NewLegacyStaticKeyDecoder(map[string][]byte{"test-key-test-key-test-key-test!": staticKey})
	if err != nil {
		log.Fatal(err)
	}
	fake := kmstest.New() // stands in for AWS KMS
	c, err := codec.New(codec.Options{KMS: fake, KeyID: fake.CreateKey(), Legacy: legacy})
	if err != nil {
		log.Fatal(err)
	}
	out, err := c.Encode([]*commonpb.Payload{{Data: []byte("new")}})
	fmt.Println(string(out[0].Metadata["encryption-format"]), err)
	_, err = c.Decode([]*commonpb.Payload{{
		Metadata: map[string][]byte{"encoding": []byte("binary/encrypted"), "encryption-key-id": []byte("retired-key")},
		Data:     make([]byte, 40),
	}})
	fmt.Println(err)
	// Output:
	// kms-envelope-v1 <nil>
	// kmscodec: decode payload 1 of 1: legacy payload's static key is unknown: key ID "retired-key"
}
