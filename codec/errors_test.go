package codec_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	commonpb "go.temporal.io/api/common/v1"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// A nil payload is the caller's mistake: a typed error, not a panic.
func TestEncodeOfANilPayloadIsAnInvalidArgument(t *testing.T) {
	fake := kmstest.New()
	c := newCodec(t, codec.Options{KMS: fake, KeyID: fake.CreateKey()})
	_, err := c.Encode([]*commonpb.Payload{payload("a"), nil})
	if !errors.Is(err, codec.ErrNilPayload) || codec.ErrorKind(err) != codec.KindInvalidArgument {
		t.Fatalf("got %v (kind %v), want ErrNilPayload", err, codec.ErrorKind(err))
	}
}

// Every error the codec returns says "kmscodec:" once, at its start.
func TestNoErrorMessageRepeatsThePrefix(t *testing.T) {
	fake := kmstest.New()
	arn, other := fake.CreateKey(), fake.CreateKey()
	c := newCodec(t, codec.Options{KMS: fake, KeyID: arn, RequireSameNamespace: true, RejectUnencrypted: true})
	fromOther := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: other}), payload("x"))
	fromNS := encode(t, c.WithNamespace("ns1"), payload("x"))
	malformed := encode(t, c, payload("x"))
	delete(malformed[0].Metadata, "encryption-key-id")
	_, errNil := c.Encode([]*commonpb.Payload{nil})
	_, errKey := c.Decode(fromOther)
	_, errNS := c.WithNamespace("ns2").Decode(fromNS)
	_, errPlain := c.Decode([]*commonpb.Payload{payload("plain")})
	_, errMalformed := c.Decode(malformed)
	_, errOptions := codec.New(codec.Options{KMS: fake, KeyID: arn, DataKeyMaxAge: -1})
	for _, err := range []error{errNil, errKey, errNS, errPlain, errMalformed, errOptions} {
		if err == nil {
			t.Fatal("no error")
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "kmscodec: ") || strings.Count(msg, "kmscodec:") != 1 {
			t.Errorf("%q", msg)
		}
	}
}

// Validation errors name the Options field at fault, as the user wrote it.
func TestValidationErrorsNameTheOptionsField(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	for field, opts := range map[string]codec.Options{
		"Options.KMS":                   {KeyID: arn},
		"Options.KeyID":                 {KMS: fake},
		"Options.DataKeyMaxAge":         {KMS: fake, KeyID: arn, DataKeyMaxAge: -time.Second},
		"Options.MaxPayloadsPerDataKey": {KMS: fake, KeyID: arn, MaxPayloadsPerDataKey: -1},
		"Options.MaxBytesPerDataKey":    {KMS: fake, KeyID: arn, MaxBytesPerDataKey: -1},
		"Options.DecryptCacheSize":      {KMS: fake, KeyID: arn, DecryptCacheSize: -1},
		"Options.DecryptCacheTTL":       {KMS: fake, KeyID: arn, DecryptCacheTTL: -1},
		"Options.KMSTimeout":            {KMS: fake, KeyID: arn, KMSTimeout: -1},
		"Options.DecryptKeyIDs":         {KMS: fake, KeyID: arn, DecryptKeyIDs: []string{"alias/old"}},
		"Options.EncryptionContext":     {KMS: fake, KeyID: arn, EncryptionContext: map[string]string{"a": "\xff"}},
	} {
		_, err := codec.New(opts)
		if err == nil || !strings.Contains(err.Error(), field) || strings.Contains(err.Error(), "cache:") {
			t.Errorf("%s: %v", field, err)
		}
		if codec.ErrorKind(err) != codec.KindInvalidArgument {
			t.Errorf("%s: kind %v", field, codec.ErrorKind(err))
		}
	}
}

// A payload refused for another namespace is counted under its own kind,
// not as "other".
func TestNamespaceMismatchIsCountedUnderItsOwnKind(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	h := &countingHandler{counts: map[string]int64{}}
	c := newCodec(t, codec.Options{KMS: fake, KeyID: arn, RequireSameNamespace: true, MetricsHandler: h})
	if _, err := c.WithNamespace("ns2").Decode(encode(t, c.WithNamespace("ns1"), payload("x"))); err == nil {
		t.Fatal("no error")
	}
	if n := h.get("kmscodec_errors kind=namespace_mismatch"); n != 1 {
		t.Fatalf("namespace_mismatch counted %d times; counts %v", n, h.counts)
	}
}

// ErrorKind names the kind of every error Decode and Encode return, and
// the names are stable.
func TestErrorKindClassifiesEveryError(t *testing.T) {
	fake := kmstest.New()
	arn, other := fake.CreateKey(), fake.CreateKey()
	c := newCodec(t, codec.Options{KMS: fake, KeyID: arn, RequireSameNamespace: true, RejectUnencrypted: true})
	decodeErr := func(p *commonpb.Payload) error {
		_, err := c.WithNamespace("ns1").Decode([]*commonpb.Payload{p})
		return err
	}
	sealed := func() *commonpb.Payload { return encode(t, c.WithNamespace("ns1"), payload("x"))[0] }
	malformed := sealed()
	delete(malformed.Metadata, "encryption-key-id")
	altered := sealed()
	altered.Data[len(altered.Data)-1] ^= 1
	unsupported := sealed()
	unsupported.Metadata["encryption-format"] = []byte("kms-envelope-v9")
	otherNS := encode(t, c.WithNamespace("ns2"), payload("x"))[0]
	otherKey := encode(t, newCodec(t, codec.Options{KMS: fake, KeyID: other, Namespace: "ns1"}), payload("x"))[0]

	refusing := kmstest.New()
	refusingARN := refusing.CreateKey()
	refused := encode(t, newCodec(t, codec.Options{KMS: refusing, KeyID: refusingARN, Namespace: "ns1"}), payload("x"))
	refused[0].Metadata["encryption-data-key"] = []byte("not a wrapped key")
	refusedErr := func() error {
		_, err := newCodec(t, codec.Options{KMS: refusing, KeyID: refusingARN}).Decode(refused)
		return err
	}()
	down := kmstest.New()
	downARN := down.CreateKey()
	down.FailWith("GenerateDataKey", &types.KMSInternalException{Message: aws.String("down")})
	_, downErr := newCodec(t, codec.Options{KMS: down, KeyID: downARN}).Encode([]*commonpb.Payload{payload("x")})
	_, nilErr := c.Encode([]*commonpb.Payload{nil})

	for _, tc := range []struct {
		err  error
		want codec.Kind
		name string
	}{
		{decodeErr(malformed), codec.KindMalformed, "malformed"},
		{decodeErr(altered), codec.KindAuthentication, "authentication"},
		{decodeErr(unsupported), codec.KindUnsupportedFormat, "unsupported_format"},
		{decodeErr(otherKey), codec.KindKeyNotAllowed, "key_not_allowed"},
		{decodeErr(otherNS), codec.KindNamespaceMismatch, "namespace_mismatch"},
		{decodeErr(payload("plain")), codec.KindUnencrypted, "unencrypted"},
		{refusedErr, codec.KindKMSRefused, "kms_refused"},
		{downErr, codec.KindKMSUnavailable, "kms_unavailable"},
		{nilErr, codec.KindInvalidArgument, "invalid_argument"},
		{errors.New("anything else"), codec.KindInternal, "internal"},
	} {
		if got := codec.ErrorKind(tc.err); got != tc.want || got.String() != tc.name {
			t.Errorf("%v: kind %v, want %s", tc.err, got, tc.name)
		}
	}
	if codec.ErrorKind(nil) != codec.KindNone {
		t.Error("nil is not KindNone")
	}
}
