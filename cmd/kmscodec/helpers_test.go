package main

import (
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// newFakeKMS returns an in-memory KMS holding keyARNs. Its key material
// is derived from the ARN, so payloads encrypted by one fake decrypt with
// another, and the committed fixtures decrypt in every run.
func newFakeKMS(keyARNs ...string) *kmstest.KMS {
	k := kmstest.New()
	for _, arn := range keyARNs {
		k.AddKey(arn)
	}
	return k
}

// encrypted returns n payloads encrypted under keyARN, as a worker in
// namespace would write them (namespace "" leaves them unbound).
func encrypted(t testing.TB, keyARN, namespace string, n int) []*commonpb.Payload {
	t.Helper()
	c, err := codec.New(codec.Options{KMS: newFakeKMS(keyARN), KeyID: keyARN, Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Encode(plain(n))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// plain returns n distinct json/plain payloads.
func plain(n int) []*commonpb.Payload {
	ps := make([]*commonpb.Payload, n)
	for i := range ps {
		ps[i] = &commonpb.Payload{
			Metadata: map[string][]byte{"encoding": []byte("json/plain")},
			Data:     []byte(`{"n":` + strings.Repeat("1", 1+i%5) + `}`),
		}
	}
	return ps
}
