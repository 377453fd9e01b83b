package cache_test

import (
	"testing"

	"github.com/temporal-kms/kmscodec/cache"
	"github.com/temporal-kms/kmscodec/kms"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

func TestRegionalRouterPrefersTheOwnReplicaThenThePreferenceThenTheWriter(t *testing.T) {
	west, east, eu := kmstest.NewInRegion("us-west-2"), kmstest.NewInRegion("us-east-1"), kmstest.NewInRegion("eu-west-1")
	clients := map[string]kms.API{"us-west-2": west, "us-east-1": east, "eu-west-1": eu}
	r := cache.NewRegionalRouter("us-west-2", clients, []string{"ap-south-1", "eu-west-1"})

	const mrk = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234"
	got := r.Route(mrk)
	want := []cache.Target{
		{API: west, KeyARN: "arn:aws:kms:us-west-2:111122223333:key/mrk-1234"},
		{API: eu, KeyARN: "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234"},
		{API: east, KeyARN: mrk},
	}
	if len(got) != len(want) {
		t.Fatalf("Route(mrk) = %d targets, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("target %d: %s, want %s", i, got[i].KeyARN, want[i].KeyARN)
		}
	}

	const single = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	if got := r.Route(single); len(got) != 1 || got[0].API != east || got[0].KeyARN != single {
		t.Errorf("a single-Region key was not routed to its own region alone: %+v", got)
	}
	const elsewhere = "arn:aws:kms:sa-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	if got := r.Route(elsewhere); len(got) != 1 || got[0].API != west || got[0].KeyARN != elsewhere {
		t.Errorf("a single-Region key of a region without a client did not go to the own client unchanged: %+v", got)
	}
}

// noRoute is a Router that knows no client for any key.
type noRoute struct{}

func (noRoute) Route(string) []cache.Target { return nil }

func TestARouterWithNoTargetFailsTheDecryptWithoutPanicking(t *testing.T) {
	fake := kmstest.New()
	c, err := cache.NewDecryptionKeys(fake, cache.DecryptionOptions{Router: noRoute{}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(cache.WrappedKey{
		Identity: "id", KeyARN: "arn:aws:kms:us-east-1:111122223333:key/k", Blob: []byte{1},
		EncryptionContext: func() (map[string]string, error) { return nil, nil },
	})
	if err == nil || fake.TotalCalls() != 0 {
		t.Fatalf("got %v with %d KMS calls, want an error and none", err, fake.TotalCalls())
	}
}
