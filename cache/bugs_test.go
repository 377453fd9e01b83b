package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/golang/mock/gomock"

	"github.com/temporal-kms/kmscodec/mocks"
)

// The key ID is told apart from the context by its position, not its
// value: a context key that happens to equal the key ID still counts.
func TestScopeTellsTheKeyIDApartFromAContextKeyOfTheSameName(t *testing.T) {
	a := NewScope("alias/k", map[string]string{"alias/k": "payments"})
	b := NewScope("alias/k", map[string]string{"alias/k": "orders"})
	if a.id == b.id {
		t.Fatal("contexts with different values share a scope")
	}
}

// During a KMS outage, an alias that cannot be resolved is not asked
// about again for every payload: the failure is remembered briefly.
func TestResolverFailuresAreRememberedBriefly(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	outage := errors.New("connection refused")
	calls := 0
	m.EXPECT().DescribeKey(gomock.Any(), gomock.Any()).DoAndReturn(
		func(context.Context, *awskms.DescribeKeyInput, ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error) {
			calls++
			return nil, outage
		}).AnyTimes()
	clk := newClock()
	r, err := NewKeyResolver(m, "alias/k", ResolverOptions{Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := r.ARN(); !errors.Is(err, outage) {
			t.Fatalf("got %v, want the outage", err)
		}
	}
	if calls != 1 {
		t.Fatalf("%d DescribeKey calls for 5 lookups within the failure TTL, want 1", calls)
	}
	clk.Advance(DefaultResolveFailureTTL)
	r.ARN()
	if calls != 2 {
		t.Fatalf("%d DescribeKey calls after the failure TTL, want 2", calls)
	}
}

func TestResolverOptionsAreValidated(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	for _, o := range []ResolverOptions{{TTL: -1}, {Timeout: -1}} {
		if _, err := NewKeyResolver(m, "alias/k", o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if _, err := NewKeyResolver(m, "", ResolverOptions{TTL: time.Minute}); err == nil {
		t.Error("empty key ID accepted")
	}
}
