package codec_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/golang/mock/gomock"

	"github.com/temporal-kms/kmscodec/cache"
	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/kms"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
	"github.com/temporal-kms/kmscodec/mocks"
)

// twoRegions is a multi-Region key with its primary in us-east-1 and a
// replica in us-west-2, each region's KMS counting its own calls.
type twoRegions struct {
	east, west       *kmstest.KMS
	primary, replica string
}

func newTwoRegions() twoRegions {
	east, west := kmstest.NewInRegion("us-east-1"), kmstest.NewInRegion("us-west-2")
	primary := east.CreateMultiRegionKey()
	return twoRegions{east: east, west: west, primary: primary, replica: east.ReplicateKey(primary, west)}
}

// westCodec is the codec of a worker in us-west-2 that also has a client
// for us-east-1.
func (r twoRegions) westCodec(t *testing.T, opts codec.Options) *codec.Codec {
	opts.KMS, opts.Region = r.west, "us-west-2"
	opts.RegionalKMS = map[string]kms.API{"us-east-1": r.east}
	if opts.KeyID == "" {
		opts.KeyID = r.replica
	}
	return newCodec(t, opts)
}

func TestAFailedOverWorkerDecryptsWithItsOwnReplicaWithoutCallingTheWritersRegion(t *testing.T) {
	r := newTwoRegions()
	written := encode(t, newCodec(t, codec.Options{KMS: r.east, KeyID: r.primary}), payloads(10)...)
	if got := string(written[0].Metadata["encryption-key-id"]); got != r.primary {
		t.Fatalf("payload names %s, want the us-east-1 primary", got)
	}
	eastBefore := r.east.TotalCalls()

	west := r.westCodec(t, codec.Options{})
	if out := mustDecode(t, west, written); !equal(out, payloads(10)) {
		t.Fatal("the us-west-2 codec did not decode what us-east-1 wrote")
	}
	mustDecode(t, west, written) // cached: the ARN recorded in the payload is still the cache key
	if n := r.east.TotalCalls() - eastBefore; n != 0 {
		t.Errorf("%d calls reached us-east-1; a replica in the own region needs none", n)
	}
	if n := r.west.Calls("Decrypt"); n != 1 {
		t.Errorf("%d Decrypt calls at us-west-2, want 1 for the one data key", n)
	}
}

func TestAFailedOverWorkerNeedsNoClientForTheWritersRegion(t *testing.T) {
	r := newTwoRegions()
	written := encode(t, newCodec(t, codec.Options{KMS: r.east, KeyID: r.primary}), payload("x"))
	west := newCodec(t, codec.Options{KMS: r.west, Region: "us-west-2", KeyID: r.replica})
	mustDecode(t, west, written)
	if n := r.west.Calls("Decrypt"); n != 1 {
		t.Errorf("%d Decrypt calls at us-west-2, want 1", n)
	}
}

func TestASingleRegionKeyIsDecryptedByItsOwnRegionsClient(t *testing.T) {
	r := newTwoRegions()
	eastKey := r.east.CreateKey()
	written := encode(t, newCodec(t, codec.Options{KMS: r.east, KeyID: eastKey}), payload("x"))
	west := r.westCodec(t, codec.Options{DecryptKeyIDs: []string{eastKey}})
	eastBefore := r.east.Calls("Decrypt")
	mustDecode(t, west, written)
	if r.east.Calls("Decrypt")-eastBefore != 1 || r.west.TotalCalls() != 0 {
		t.Errorf("Decrypt calls: us-east-1 %d, us-west-2 %d; a single-Region key is unwrapped only in its own region",
			r.east.Calls("Decrypt")-eastBefore, r.west.TotalCalls())
	}
}

func TestWithoutARegionDecryptCallsTheOneClientWithThePayloadsARN(t *testing.T) {
	// Today's behaviour: no regional routing, no replica substitution.
	r := newTwoRegions()
	written := encode(t, newCodec(t, codec.Options{KMS: r.east, KeyID: r.primary}), payload("x"))
	c := newCodec(t, codec.Options{KMS: r.east, KeyID: r.replica})
	eastBefore := r.east.Calls("Decrypt")
	mustDecode(t, c, written)
	if r.east.Calls("Decrypt")-eastBefore != 1 || r.west.TotalCalls() != 0 {
		t.Error("a codec with no Region did not call its one client")
	}
}

func TestRegionPreferenceOrdersTheReplicasTriedWhenTheOwnRegionFails(t *testing.T) {
	r := newTwoRegions()
	eu := kmstest.NewInRegion("eu-west-1")
	r.east.ReplicateKey(r.primary, eu)
	written := encode(t, newCodec(t, codec.Options{KMS: r.east, KeyID: r.primary}), payload("x"))
	r.west.FailWith("Decrypt", kmstest.Error("ThrottlingException", "slow down")) // transient
	eastBefore := r.east.TotalCalls()

	c := newCodec(t, codec.Options{
		KMS: r.west, Region: "us-west-2", KeyID: r.replica,
		RegionalKMS:      map[string]kms.API{"us-east-1": r.east, "eu-west-1": eu},
		RegionPreference: []string{"eu-west-1", "us-east-1"},
	})
	mustDecode(t, c, written)
	if r.west.Calls("Decrypt") != 1 || eu.Calls("Decrypt") != 1 || r.east.TotalCalls() != eastBefore {
		t.Errorf("Decrypt calls: us-west-2 %d, eu-west-1 %d, us-east-1 %d; want 1, 1, 0",
			r.west.Calls("Decrypt"), eu.Calls("Decrypt"), r.east.TotalCalls()-eastBefore)
	}
}

func TestARefusalByTheOwnReplicaIsNotRetriedInOtherRegions(t *testing.T) {
	r := newTwoRegions()
	written := encode(t, newCodec(t, codec.Options{KMS: r.east, KeyID: r.primary}), payload("x"))
	r.west.FailWith("Decrypt", kmstest.Error("AccessDeniedException", "no"))
	eastBefore := r.east.TotalCalls()
	if _, err := r.westCodec(t, codec.Options{}).Decode(written); err == nil {
		t.Fatal("decoded although the own replica refused")
	}
	if n := r.east.TotalCalls() - eastBefore; n != 0 {
		t.Errorf("%d calls went on to us-east-1 after a refusal", n)
	}
}

func TestAReplicaAnswerNamingAnotherKeyIsRefused(t *testing.T) {
	r := newTwoRegions()
	written := encode(t, newCodec(t, codec.Options{KMS: r.east, KeyID: r.primary}), payload("x"))
	m := mocks.NewMockAPI(gomock.NewController(t))
	m.EXPECT().Decrypt(gomock.Any(), gomock.Any()).DoAndReturn(
		func(_ context.Context, in *awskms.DecryptInput, _ ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
			if got := aws.ToString(in.KeyId); got != r.replica {
				t.Errorf("Decrypt named %s, want the own replica %s", got, r.replica)
			}
			// Answers for the primary, not the replica asked for.
			return &awskms.DecryptOutput{KeyId: aws.String(r.primary), Plaintext: make([]byte, 32)}, nil
		})
	c := newCodec(t, codec.Options{KMS: m, Region: "us-west-2", KeyID: r.replica})
	if _, err := c.Decode(written); !errors.Is(err, cache.ErrInvalidResponse) {
		t.Fatalf("got %v, want the answer refused with cache.ErrInvalidResponse", err)
	}
}

func TestTheAllowListMatchesMultiRegionReplicasOnly(t *testing.T) {
	r := newTwoRegions()
	eastSingle := r.east.CreateKey()
	westSingle := strings.Replace(eastSingle, ":us-east-1:", ":us-west-2:", 1)
	r.west.AddKey(westSingle)
	otherAccount := strings.Replace(r.primary, ":"+kmstest.Account+":", ":444455556666:", 1)
	otherPartition := strings.Replace(strings.Replace(r.primary, "arn:aws:", "arn:aws-cn:", 1), ":us-east-1:", ":cn-north-1:", 1)
	for _, arn := range []string{otherAccount, otherPartition} {
		kmstest.New().AddKey(arn) // well-formed
	}

	tests := []struct {
		name      string
		allowed   codec.Options
		payloadOf string
		want      bool
	}{
		{"the replica of the key in KeyID", codec.Options{KeyID: r.replica}, r.primary, true},
		{"the replica of a key in DecryptKeyIDs", codec.Options{KeyID: eastSingle, DecryptKeyIDs: []string{r.replica}}, r.primary, true},
		{"a single-Region key of another region", codec.Options{KeyID: westSingle}, eastSingle, false},
		{"another account's mrk- key", codec.Options{KeyID: r.replica}, otherAccount, false},
		{"another partition's mrk- key", codec.Options{KeyID: r.replica}, otherPartition, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writer := kmstest.New()
			writer.AddKey(tt.payloadOf)
			written := encode(t, newCodec(t, codec.Options{KMS: writer, KeyID: tt.payloadOf}), payload("x"))
			opts := tt.allowed
			opts.KMS, opts.Region = r.west, "us-west-2"
			opts.RegionalKMS = map[string]kms.API{"us-east-1": r.east}
			before := r.west.TotalCalls() + r.east.TotalCalls()
			_, err := newCodec(t, opts).Decode(written)
			switch {
			case tt.want && err != nil:
				t.Fatalf("refused: %v", err)
			case !tt.want && !errors.Is(err, codec.ErrKeyNotAllowed):
				t.Fatalf("got %v, want ErrKeyNotAllowed", err)
			case !tt.want && r.west.TotalCalls()+r.east.TotalCalls() != before:
				t.Fatal("a KMS call was made for a key that is not allowed")
			}
		})
	}
}

func TestRegionalOptionsAreValidated(t *testing.T) {
	r := newTwoRegions()
	tests := []struct {
		name string
		opts codec.Options
	}{
		{"regional clients without a Region", codec.Options{KMS: r.west, KeyID: r.replica, RegionalKMS: map[string]kms.API{"us-east-1": r.east}}},
		{"a region preference without a Region", codec.Options{KMS: r.west, KeyID: r.replica, RegionPreference: []string{"us-east-1"}}},
		{"a regional client for the own region", codec.Options{KMS: r.west, Region: "us-west-2", KeyID: r.replica, RegionalKMS: map[string]kms.API{"us-west-2": r.west}}},
		{"a nil regional client", codec.Options{KMS: r.west, Region: "us-west-2", KeyID: r.replica, RegionalKMS: map[string]kms.API{"us-east-1": nil}}},
		{"an empty region name", codec.Options{KMS: r.west, Region: "us-west-2", KeyID: r.replica, RegionalKMS: map[string]kms.API{"": r.east}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := codec.New(tt.opts); !errors.Is(err, codec.ErrInvalidOptions) {
				t.Fatalf("got %v, want ErrInvalidOptions", err)
			}
		})
	}
}
