package kmstest_test

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	smithy "github.com/aws/smithy-go"

	"github.com/temporal-kms/kmscodec/kms"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

var ctxNS = map[string]string{"temporal-namespace": "ns"}

// generate wraps a fresh data key under keyID and ec.
func generate(t *testing.T, api kms.API, keyID string, ec map[string]string) *awskms.GenerateDataKeyOutput {
	t.Helper()
	out, err := api.GenerateDataKey(context.Background(), &awskms.GenerateDataKeyInput{
		KeyId: aws.String(keyID), KeySpec: types.DataKeySpecAes256, EncryptionContext: ec,
	})
	if err != nil {
		t.Fatalf("GenerateDataKey(%s): %v", keyID, err)
	}
	return out
}

func decrypt(api kms.API, keyID string, blob []byte, ec map[string]string) (*awskms.DecryptOutput, error) {
	return api.Decrypt(context.Background(), &awskms.DecryptInput{KeyId: aws.String(keyID), CiphertextBlob: blob, EncryptionContext: ec})
}

func TestRoundTrip(t *testing.T) {
	k := kmstest.New()
	arn := k.CreateKey()
	g := generate(t, k, arn, ctxNS)
	if len(g.Plaintext) != 32 || aws.ToString(g.KeyId) != arn {
		t.Fatalf("GenerateDataKey: %d-byte key from %q", len(g.Plaintext), aws.ToString(g.KeyId))
	}
	// A context in another map with the same pairs is the same context.
	d, err := decrypt(k, arn, g.CiphertextBlob, map[string]string{"temporal-namespace": "ns"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.Plaintext, g.Plaintext) || aws.ToString(d.KeyId) != arn {
		t.Fatalf("Decrypt gave back a different key or key ARN %q", aws.ToString(d.KeyId))
	}
	// KMS lets a symmetric Decrypt leave the key out: the blob names it.
	if d, err := k.Decrypt(context.Background(), &awskms.DecryptInput{CiphertextBlob: g.CiphertextBlob, EncryptionContext: ctxNS}); err != nil || !bytes.Equal(d.Plaintext, g.Plaintext) {
		t.Fatalf("Decrypt without KeyId: %v", err)
	}
	if k.Calls("GenerateDataKey") != 1 || k.Calls("Decrypt") != 2 || k.TotalCalls() != 3 {
		t.Fatalf("calls: %d GenerateDataKey, %d Decrypt, %d in all", k.Calls("GenerateDataKey"), k.Calls("Decrypt"), k.TotalCalls())
	}
}

// The material comes from the ARN: a wrapped key outlives the KMS value
// that made it, which is what lets fixtures be committed.
func TestKeysAreDerivedFromTheARN(t *testing.T) {
	const arn = "arn:aws:kms:eu-west-1:444455556666:key/11111111-2222-4333-8444-555555555555"
	a, b := kmstest.New(), kmstest.New()
	a.AddKey(arn)
	b.AddKey(arn)
	g := generate(t, a, arn, nil)
	if d, err := decrypt(b, arn, g.CiphertextBlob, nil); err != nil || !bytes.Equal(d.Plaintext, g.Plaintext) {
		t.Fatalf("another KMS with the same ARN: %v", err)
	}
	if a.CreateKey() != b.CreateKey() {
		t.Fatal("CreateKey is numbered per KMS, so the first keys of two KMS values should match")
	}
}

func TestContextMismatchIsInvalidCiphertext(t *testing.T) {
	k := kmstest.New()
	arn := k.CreateKey()
	g := generate(t, k, arn, ctxNS)
	for name, ec := range map[string]map[string]string{
		"other value": {"temporal-namespace": "other"},
		"extra pair":  {"temporal-namespace": "ns", "x": "y"},
		"none":        nil,
	} {
		_, err := decrypt(k, arn, g.CiphertextBlob, ec)
		if !errors.As(err, new(*types.InvalidCiphertextException)) {
			t.Errorf("%s: got %v, want InvalidCiphertextException", name, err)
		}
	}
	// An absent and an empty context are the same, as in KMS.
	g = generate(t, k, arn, map[string]string{})
	if _, err := decrypt(k, arn, g.CiphertextBlob, nil); err != nil {
		t.Errorf("empty context, decrypted with none: %v", err)
	}
}

func TestWrongKeyOrBlobIsRefused(t *testing.T) {
	k := kmstest.New()
	a, b := k.CreateKey(), k.CreateKey()
	g := generate(t, k, a, nil)
	if _, err := decrypt(k, b, g.CiphertextBlob, nil); !errors.As(err, new(*types.InvalidCiphertextException)) {
		t.Errorf("blob of key A, Decrypt naming key B: got %v, want InvalidCiphertextException", err)
	}
	flipped := bytes.Clone(g.CiphertextBlob)
	flipped[len(flipped)-1] ^= 1
	for name, blob := range map[string][]byte{"flipped bit": flipped, "empty": nil, "garbage": bytes.Repeat([]byte{0xbb}, 100)} {
		if _, err := decrypt(k, a, blob, nil); !errors.As(err, new(*types.InvalidCiphertextException)) {
			t.Errorf("%s blob: got %v, want InvalidCiphertextException", name, err)
		}
	}
	if _, err := decrypt(k, "arn:aws:kms:us-east-1:111122223333:key/unknown", g.CiphertextBlob, nil); !errors.As(err, new(*types.NotFoundException)) {
		t.Errorf("unknown key: got %v, want NotFoundException", err)
	}
}

func TestAliasResolution(t *testing.T) {
	k := kmstest.New()
	old, current := k.CreateKey(), k.CreateKey()
	k.SetAlias("alias/temporal", old)
	k.SetAlias("alias/temporal", current) // moved, as on rotation
	keyID := current[len(current)-len("00000000-0000-4000-8000-000000000002"):]
	for _, id := range []string{
		current,
		keyID,
		"alias/temporal",
		"arn:aws:kms:us-east-1:111122223333:alias/temporal",
	} {
		out, err := k.DescribeKey(context.Background(), &awskms.DescribeKeyInput{KeyId: aws.String(id)})
		if err != nil {
			t.Errorf("DescribeKey(%s): %v", id, err)
			continue
		}
		if md := out.KeyMetadata; aws.ToString(md.Arn) != current || aws.ToString(md.KeyId) != keyID || !md.Enabled {
			t.Errorf("DescribeKey(%s): %q %q enabled=%v, want %q", id, aws.ToString(md.Arn), aws.ToString(md.KeyId), md.Enabled, current)
		}
		// What an alias wraps, the key ARN unwraps.
		g := generate(t, k, id, nil)
		if aws.ToString(g.KeyId) != current {
			t.Errorf("GenerateDataKey(%s) reports key %q", id, aws.ToString(g.KeyId))
		}
		if _, err := decrypt(k, current, g.CiphertextBlob, nil); err != nil {
			t.Errorf("wrapped through %s: %v", id, err)
		}
	}
	if _, err := k.DescribeKey(context.Background(), &awskms.DescribeKeyInput{KeyId: aws.String("alias/none")}); !errors.As(err, new(*types.NotFoundException)) {
		t.Errorf("unknown alias: got %v, want NotFoundException", err)
	}
}

func TestDisable(t *testing.T) {
	k := kmstest.New()
	arn := k.CreateKey()
	g := generate(t, k, arn, nil)
	k.Disable(arn)
	if _, err := decrypt(k, arn, g.CiphertextBlob, nil); !errors.As(err, new(*types.DisabledException)) {
		t.Errorf("Decrypt: got %v, want DisabledException", err)
	}
	_, err := k.GenerateDataKey(context.Background(), &awskms.GenerateDataKeyInput{KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256})
	if !errors.As(err, new(*types.DisabledException)) {
		t.Errorf("GenerateDataKey: got %v, want DisabledException", err)
	}
	// As in KMS, a disabled key can still be described.
	out, err := k.DescribeKey(context.Background(), &awskms.DescribeKeyInput{KeyId: aws.String(arn)})
	if err != nil || out.KeyMetadata.Enabled || out.KeyMetadata.KeyState != types.KeyStateDisabled {
		t.Errorf("DescribeKey: %v %+v, want the key described as disabled", err, out)
	}
}

func TestFailWith(t *testing.T) {
	k := kmstest.New()
	arn := k.CreateKey()
	g := generate(t, k, arn, nil)
	k.FailWith("Decrypt", kmstest.Error("AccessDeniedException", "not allowed"))
	_, err := decrypt(k, arn, g.CiphertextBlob, nil)
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "AccessDeniedException" || apiErr.ErrorMessage() != "not allowed" {
		t.Fatalf("got %v, want the injected AccessDeniedException", err)
	}
	generate(t, k, arn, nil) // other operations are unaffected
	k.FailWith("Decrypt", nil)
	if _, err := decrypt(k, arn, g.CiphertextBlob, nil); err != nil {
		t.Fatalf("after FailWith(nil): %v", err)
	}
	if n := k.Calls("Decrypt"); n != 2 {
		t.Fatalf("%d Decrypt calls, want 2: a failed call is still a call", n)
	}
}

// Handler speaks the protocol of the SDK's own client, so code that takes
// an endpoint runs against it unchanged, typed errors included.
func TestHandlerWithTheSDKClient(t *testing.T) {
	k := kmstest.New()
	arn := k.CreateKey()
	k.SetAlias("alias/temporal", arn)
	srv := httptest.NewServer(k.Handler())
	defer srv.Close()
	client := awskms.New(awskms.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(srv.URL),
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		RetryMaxAttempts: 1,
	})

	g := generate(t, client, "alias/temporal", ctxNS)
	if aws.ToString(g.KeyId) != arn || len(g.Plaintext) != 32 {
		t.Fatalf("GenerateDataKey over HTTP: key %q, %d-byte data key", aws.ToString(g.KeyId), len(g.Plaintext))
	}
	d, err := decrypt(client, arn, g.CiphertextBlob, ctxNS)
	if err != nil || !bytes.Equal(d.Plaintext, g.Plaintext) || aws.ToString(d.KeyId) != arn {
		t.Fatalf("Decrypt over HTTP: %v", err)
	}
	out, err := client.DescribeKey(context.Background(), &awskms.DescribeKeyInput{KeyId: aws.String("alias/temporal")})
	if err != nil || aws.ToString(out.KeyMetadata.Arn) != arn || !out.KeyMetadata.Enabled || out.KeyMetadata.KeyState != types.KeyStateEnabled {
		t.Fatalf("DescribeKey over HTTP: %v %+v", err, out)
	}

	if _, err := decrypt(client, arn, g.CiphertextBlob, nil); !errors.As(err, new(*types.InvalidCiphertextException)) {
		t.Errorf("context mismatch over HTTP: got %v, want InvalidCiphertextException", err)
	}
	k.FailWith("Decrypt", kmstest.Error("AccessDeniedException", "not allowed"))
	var apiErr smithy.APIError
	if _, err := decrypt(client, arn, g.CiphertextBlob, ctxNS); !errors.As(err, &apiErr) || apiErr.ErrorCode() != "AccessDeniedException" {
		t.Errorf("injected failure over HTTP: got %v, want AccessDeniedException", err)
	}
	k.FailWith("Decrypt", nil)
	k.Disable(arn)
	if _, err := decrypt(client, arn, g.CiphertextBlob, ctxNS); !errors.As(err, new(*types.DisabledException)) {
		t.Errorf("disabled key over HTTP: got %v, want DisabledException", err)
	}
	if n := k.TotalCalls(); n != 6 {
		t.Errorf("%d calls reached the KMS, want 6", n)
	}
}

func TestCounterCountsEveryCallItPassesOn(t *testing.T) {
	k := kmstest.New()
	arn := k.CreateKey()
	c := &kmstest.Counter{API: k}
	g := generate(t, c, arn, ctxNS)
	if _, err := decrypt(c, arn, g.CiphertextBlob, ctxNS); err != nil {
		t.Fatal(err)
	}
	if _, err := decrypt(c, arn, g.CiphertextBlob, nil); err == nil {
		t.Fatal("Decrypt with the wrong context succeeded")
	}
	if _, err := c.DescribeKey(context.Background(), &awskms.DescribeKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	if c.GenerateDataKeyCalls.Load() != 1 || c.DecryptCalls.Load() != 2 || c.DescribeKeyCalls.Load() != 1 || c.Total() != 4 {
		t.Fatalf("counted %d GenerateDataKey, %d Decrypt, %d DescribeKey, %d in all", c.GenerateDataKeyCalls.Load(), c.DecryptCalls.Load(), c.DescribeKeyCalls.Load(), c.Total())
	}
	if int64(k.TotalCalls()) != c.Total() {
		t.Fatalf("the wrapped KMS saw %d calls, the counter %d", k.TotalCalls(), c.Total())
	}
}

func TestMultiRegionReplicasUnwrapWhatAnyReplicaWrapped(t *testing.T) {
	east, west := kmstest.NewInRegion("us-east-1"), kmstest.NewInRegion("us-west-2")
	primary := east.CreateMultiRegionKey()
	replica := east.ReplicateKey(primary, west)
	if want := strings.Replace(primary, ":us-east-1:", ":us-west-2:", 1); replica != want || !strings.Contains(primary, ":key/mrk-") {
		t.Fatalf("primary %q, replica %q; want an mrk- key and %q", primary, replica, want)
	}

	g := generate(t, east, primary, ctxNS)
	d, err := decrypt(west, replica, g.CiphertextBlob, ctxNS)
	if err != nil || !bytes.Equal(d.Plaintext, g.Plaintext) || aws.ToString(d.KeyId) != replica {
		t.Fatalf("the us-west-2 replica did not unwrap the us-east-1 data key: %v", err)
	}
	if _, err := decrypt(west, primary, g.CiphertextBlob, ctxNS); !errors.As(err, new(*types.NotFoundException)) {
		t.Errorf("the us-west-2 KMS served the us-east-1 ARN: got %v, want NotFoundException", err)
	}
	if _, err := decrypt(west, replica, g.CiphertextBlob, nil); !errors.As(err, new(*types.InvalidCiphertextException)) {
		t.Errorf("replica ignored the encryption context: got %v", err)
	}
	if east.Calls("GenerateDataKey") != 1 || east.TotalCalls() != 1 || west.Calls("Decrypt") != 3 || west.TotalCalls() != 3 {
		t.Errorf("calls: us-east-1 %d, us-west-2 %d; want each region to count its own", east.TotalCalls(), west.TotalCalls())
	}
}

func TestSingleRegionKeysWithTheSameIDInTwoRegionsAreUnrelated(t *testing.T) {
	east, west := kmstest.NewInRegion("us-east-1"), kmstest.NewInRegion("us-west-2")
	eastKey := east.CreateKey()
	westKey := west.CreateKey() // the same numbered key ID, in us-west-2
	if strings.Replace(eastKey, ":us-east-1:", ":us-west-2:", 1) != westKey {
		t.Fatalf("keys %q and %q differ by more than their region", eastKey, westKey)
	}
	g := generate(t, east, eastKey, ctxNS)
	if _, err := decrypt(west, westKey, g.CiphertextBlob, ctxNS); !errors.As(err, new(*types.InvalidCiphertextException)) {
		t.Fatalf("a single-Region key unwrapped another region's data key: %v", err)
	}
}

func TestRegionalKMSRefusesAnotherRegionsKey(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("AddKey of a us-east-1 key into the us-west-2 KMS did not panic")
		}
	}()
	kmstest.NewInRegion("us-west-2").AddKey("arn:aws:kms:us-east-1:111122223333:key/k")
}

func TestEachRegionServesItsOwnReplicaOverHTTP(t *testing.T) {
	east, west := kmstest.NewInRegion("us-east-1"), kmstest.NewInRegion("us-west-2")
	primary := east.CreateMultiRegionKey()
	replica := east.ReplicateKey(primary, west)
	eastSrv, westSrv := httptest.NewServer(east.Handler()), httptest.NewServer(west.Handler())
	defer eastSrv.Close()
	defer westSrv.Close()
	client := func(region, url string) *awskms.Client {
		return awskms.New(awskms.Options{
			Region: region, BaseEndpoint: aws.String(url), RetryMaxAttempts: 1,
			Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		})
	}
	g := generate(t, client("us-east-1", eastSrv.URL), primary, ctxNS)
	d, err := decrypt(client("us-west-2", westSrv.URL), replica, g.CiphertextBlob, ctxNS)
	if err != nil || !bytes.Equal(d.Plaintext, g.Plaintext) {
		t.Fatalf("Decrypt at the us-west-2 endpoint: %v", err)
	}
	if east.TotalCalls() != 1 || west.Calls("Decrypt") != 1 {
		t.Errorf("us-east-1 saw %d calls, us-west-2 %d Decrypt; want 1 and 1", east.TotalCalls(), west.Calls("Decrypt"))
	}
}
