package codec_test

import (
	"context"
	"fmt"
	"log"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// A client (and a worker built from it) that encrypts every payload under
// a KMS key, reached with the standard AWS credential chain.
func Example() {
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	c, err := codec.New(codec.Options{
		KMS:   kms.NewFromConfig(cfg),
		KeyID: "alias/temporal-payloads",
	})
	if err != nil {
		log.Fatal(err)
	}
	dc := codec.NewDataConverter(c, codec.DataConverterOptions{})
	opts := client.Options{
		HostPort:         "localhost:7233",
		Namespace:        "default",
		DataConverter:    dc,
		FailureConverter: codec.NewFailureConverter(dc),
	}
	_ = opts // client.Dial(opts), then worker.New(tc, "task-queue", worker.Options{})
}

// Rotating master keys: encrypt under the new key (here by moving the
// alias) and keep the old key's ARN in DecryptKeyIDs, so histories written
// under it still decode.
func ExampleOptions_rotation() {
	fake := kmstest.New() // stands in for AWS KMS
	oldKey, newKey := fake.CreateKey(), fake.CreateKey()
	fake.SetAlias("alias/temporal-payloads", oldKey)
	before, _ := codec.New(codec.Options{KMS: fake, KeyID: "alias/temporal-payloads"})
	history, _ := before.Encode([]*commonpb.Payload{{Data: []byte("written before rotation")}})

	fake.SetAlias("alias/temporal-payloads", newKey)
	after, _ := codec.New(codec.Options{
		KMS:           fake,
		KeyID:         "alias/temporal-payloads",
		DecryptKeyIDs: []string{oldKey},
	})
	decoded, err := after.Decode(history)
	fmt.Println(string(decoded[0].Data), err)
	fresh, _ := after.Encode([]*commonpb.Payload{{Data: []byte("new")}})
	fmt.Println(string(fresh[0].Metadata["encryption-key-id"]) == newKey)
	// Output:
	// written before rotation <nil>
	// true
}

// Encode and Decode on their own, as a codec server uses them, with the
// KMS calls they cost.
func ExampleCodec_Encode() {
	fake := kmstest.New() // stands in for AWS KMS
	c, _ := codec.New(codec.Options{KMS: fake, KeyID: fake.CreateKey(), Namespace: "payments"})
	in := make([]*commonpb.Payload, 1000)
	for i := range in {
		in[i] = &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"secret"`)}
	}
	encrypted, _ := c.Encode(in)
	fmt.Printf("%s %s\n", encrypted[0].Metadata["encoding"], encrypted[0].Metadata["encryption-context"])

	reader, _ := codec.New(codec.Options{KMS: fake, KeyID: string(encrypted[0].Metadata["encryption-key-id"])})
	out, _ := reader.Decode(encrypted)
	fmt.Println(string(out[999].Data))
	fmt.Println("GenerateDataKey:", fake.Calls("GenerateDataKey"), "Decrypt:", fake.Calls("Decrypt"))
	// Output:
	// binary/encrypted {"temporal-namespace":"payments"}
	// "secret"
	// GenerateDataKey: 1 Decrypt: 1
}
