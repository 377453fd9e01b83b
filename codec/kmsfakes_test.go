package codec_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/golang/mock/gomock"
	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/temporal-kms/kmscodec/kms"
	"github.com/temporal-kms/kmscodec/mocks"
)

// testVectors are the format's test vectors (envelope/testdata), as a
// codec sees them.
type testVectors struct {
	keyARN     string
	wrappedKey []byte
	dataKey    []byte
	named      map[string]*commonpb.Payload // every vector's sealed payload, by name
	// opens maps what the AAD and tag cover of each good vector to the
	// payload it decodes to.
	opens map[string]*commonpb.Payload
}

func loadTestVectors(tb testing.TB) testVectors {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("..", "envelope", "testdata", "*.json"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no test vectors in envelope/testdata (%v)", err)
	}
	v := testVectors{named: map[string]*commonpb.Payload{}, opens: map[string]*commonpb.Payload{}}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			tb.Fatal(err)
		}
		var fields struct {
			DataKey    string          `json:"data_key"`
			KeyARN     string          `json:"key_arn"`
			WrappedKey string          `json:"wrapped_key"`
			Input      json.RawMessage `json:"input"`
			Sealed     json.RawMessage `json:"sealed"`
		}
		if err := json.Unmarshal(raw, &fields); err != nil {
			tb.Fatalf("%s: %v", file, err)
		}
		sealed := &commonpb.Payload{}
		if err := protojson.Unmarshal(fields.Sealed, sealed); err != nil {
			tb.Fatalf("%s: %v", file, err)
		}
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		v.named[name] = sealed
		if !strings.HasPrefix(name, "good_") {
			continue
		}
		v.keyARN = fields.KeyARN
		if v.wrappedKey, err = hex.DecodeString(fields.WrappedKey); err != nil {
			tb.Fatalf("%s: %v", file, err)
		}
		if v.dataKey, err = hex.DecodeString(fields.DataKey); err != nil {
			tb.Fatalf("%s: %v", file, err)
		}
		input := &commonpb.Payload{}
		if err := protojson.Unmarshal(fields.Input, input); err != nil {
			tb.Fatalf("%s: %v", file, err)
		}
		v.opens[authenticatedBytes(sealed)] = input
	}
	if v.keyARN == "" {
		tb.Fatal("no good_* test vector")
	}
	return v
}

// authenticatedBytes is what a kms-envelope-v1 payload's AAD and tag
// cover: a payload that decodes must carry exactly these bytes of one
// payload that was sealed.
func authenticatedBytes(p *commonpb.Payload) string {
	md := p.GetMetadata()
	ctx, hasCtx := md["encryption-context"]
	present := "no context"
	if hasCtx {
		present = "context"
	}
	return strings.Join([]string{string(md["encryption-key-id"]), string(md["encryption-data-key"]), present, string(ctx), string(p.GetData())}, "\x00")
}

// vectorKMS stands in for KMS as the test vectors do: it unwraps their
// wrapped key to their data key, under their key ARN, whatever
// encryption context it is given, so that only the payload's own AAD
// stands between a changed context and a decrypted payload. Every other
// call goes to the KMS it embeds.
type vectorKMS struct {
	kms.API
	vectors testVectors
}

func (k *vectorKMS) Decrypt(ctx context.Context, in *awskms.DecryptInput, opts ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
	if aws.ToString(in.KeyId) != k.vectors.keyARN {
		return k.API.Decrypt(ctx, in, opts...)
	}
	if !bytes.Equal(in.CiphertextBlob, k.vectors.wrappedKey) {
		return nil, &types.InvalidCiphertextException{Message: aws.String("not the vectors' wrapped key")}
	}
	return &awskms.DecryptOutput{KeyId: aws.String(k.vectors.keyARN), Plaintext: bytes.Clone(k.vectors.dataKey)}, nil
}

// newMockWithNoCalls returns a KMS on which any call fails the test.
func newMockWithNoCalls(t *testing.T) *mocks.MockAPI {
	return mocks.NewMockAPI(gomock.NewController(t))
}
