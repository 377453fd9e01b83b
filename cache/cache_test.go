package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	"github.com/golang/mock/gomock"

	"github.com/temporal-kms/kmscodec/kms/kmstest"
	"github.com/temporal-kms/kmscodec/mocks"
)

const keyARN = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000001"

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// identity is the prepare function of tests that need no value: the data
// key's wrapped bytes say which data key was handed out.
func identity(dk DataKey) (string, error) { return string(dk.Wrapped), nil }

func generated(i int) *awskms.GenerateDataKeyOutput {
	return &awskms.GenerateDataKeyOutput{
		KeyId:          aws.String(keyARN),
		Plaintext:      bytes.Repeat([]byte{byte(i)}, 32),
		CiphertextBlob: []byte(fmt.Sprintf("wrapped-%d", i)),
	}
}

// countingGenerate answers GenerateDataKey with a new data key each call.
func countingGenerate(m *mocks.MockAPI) *atomic.Int32 {
	var n atomic.Int32
	m.EXPECT().GenerateDataKey(gomock.Any(), gomock.Any()).DoAndReturn(
		func(context.Context, *awskms.GenerateDataKeyInput, ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
			return generated(int(n.Add(1))), nil
		}).AnyTimes()
	return &n
}

func TestEncryptionKeyIsReusedUpToMaxPayloads(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	calls := countingGenerate(m)
	c, err := NewEncryptionKeys(m, EncryptionOptions{MaxPayloads: 3}, identity)
	if err != nil {
		t.Fatal(err)
	}
	scope := NewScope("alias/k", nil)
	var got []string
	for range 7 {
		v, arn, err := c.Get(scope, 10)
		if err != nil {
			t.Fatal(err)
		}
		if arn != keyARN {
			t.Fatalf("key ARN %q", arn)
		}
		got = append(got, v)
	}
	want := []string{"wrapped-1", "wrapped-1", "wrapped-1", "wrapped-2", "wrapped-2", "wrapped-2", "wrapped-3"}
	if fmt.Sprint(got) != fmt.Sprint(want) || calls.Load() != 3 {
		t.Fatalf("got %v with %d calls, want %v with 3", got, calls.Load(), want)
	}
}

func TestEncryptionKeyExpiresAfterMaxAge(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	calls := countingGenerate(m)
	clk := newClock()
	c, _ := NewEncryptionKeys(m, EncryptionOptions{MaxAge: time.Minute, Clock: clk.Now}, identity)
	scope := NewScope("alias/k", nil)
	first, _, _ := c.Get(scope, 1)
	clk.Advance(59 * time.Second)
	if v, _, _ := c.Get(scope, 1); v != first {
		t.Fatal("key replaced before MaxAge")
	}
	clk.Advance(time.Second)
	if v, _, _ := c.Get(scope, 1); v == first || calls.Load() != 2 {
		t.Fatalf("key not replaced at MaxAge (calls %d)", calls.Load())
	}
}

func TestEncryptionKeyIsReplacedWhenMaxBytesIsReached(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	calls := countingGenerate(m)
	c, _ := NewEncryptionKeys(m, EncryptionOptions{MaxBytes: 100}, identity)
	scope := NewScope("alias/k", nil)
	for _, size := range []int64{60, 40, 1, 500, 10} {
		if _, _, err := c.Get(scope, size); err != nil {
			t.Fatal(err)
		}
	}
	// 60+40 fill key 1; 1 starts key 2; 500 is oversized: key 3 of its own; 10 starts key 4.
	if calls.Load() != 4 {
		t.Fatalf("%d GenerateDataKey calls, want 4", calls.Load())
	}
}

func TestMaxPayloadsOneGeneratesADataKeyPerPayload(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	calls := countingGenerate(m)
	c, _ := NewEncryptionKeys(m, EncryptionOptions{MaxPayloads: 1}, identity)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, _, err := c.Get(NewScope("alias/k", nil), 1); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if calls.Load() != 50 {
		t.Fatalf("%d GenerateDataKey calls for 50 payloads", calls.Load())
	}
}

func TestConcurrentColdEncryptsShareOneKMSCall(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	release := make(chan struct{})
	var calls atomic.Int32
	m.EXPECT().GenerateDataKey(gomock.Any(), gomock.Any()).DoAndReturn(
		func(context.Context, *awskms.GenerateDataKeyInput, ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
			calls.Add(1)
			<-release
			return generated(1), nil
		}).AnyTimes()
	c, _ := NewEncryptionKeys(m, EncryptionOptions{}, identity)
	scope := NewScope("alias/k", map[string]string{"temporal-namespace": "ns"})
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			if v, _, err := c.Get(scope, 1); err != nil || v != "wrapped-1" {
				t.Errorf("got %q, %v", v, err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond) // let the goroutines pile up on the flight
	close(release)
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("%d GenerateDataKey calls, want 1", calls.Load())
	}
}

func TestScopesGetSeparateDataKeys(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	var contexts []map[string]string
	var mu sync.Mutex
	m.EXPECT().GenerateDataKey(gomock.Any(), gomock.Any()).DoAndReturn(
		func(_ context.Context, in *awskms.GenerateDataKeyInput, _ ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
			mu.Lock()
			defer mu.Unlock()
			contexts = append(contexts, in.EncryptionContext)
			if in.KeySpec != types.DataKeySpecAes256 {
				t.Errorf("key spec %v", in.KeySpec)
			}
			return generated(len(contexts)), nil
		}).Times(2)
	c, _ := NewEncryptionKeys(m, EncryptionOptions{}, identity)
	a, _, _ := c.Get(NewScope("alias/k", map[string]string{"temporal-namespace": "a"}), 1)
	b, _, _ := c.Get(NewScope("alias/k", map[string]string{"temporal-namespace": "b"}), 1)
	a2, _, _ := c.Get(NewScope("alias/k", map[string]string{"temporal-namespace": "a"}), 1)
	if a == b || a != a2 {
		t.Fatalf("a=%s b=%s a again=%s", a, b, a2)
	}
	if contexts[0]["temporal-namespace"] != "a" || contexts[1]["temporal-namespace"] != "b" {
		t.Fatalf("contexts sent: %v", contexts)
	}
}

func TestScopesAreBounded(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	countingGenerate(m)
	c, _ := NewEncryptionKeys(m, EncryptionOptions{MaxScopes: 4}, identity)
	for i := range 20 {
		c.Get(NewScope("alias/k", map[string]string{"n": fmt.Sprint(i)}), 1)
	}
	if c.held() != 4 {
		t.Fatalf("%d scopes held, want 4", c.held())
	}
}

func TestScopeIdentityIsUnambiguous(t *testing.T) {
	a := NewScope("k", map[string]string{"a": "1:b"})
	b := NewScope("k", map[string]string{"a": "1", "b": ""})
	if a.id == b.id {
		t.Fatal("different contexts share a scope")
	}
	if NewScope("k", map[string]string{"x": "1", "y": "2"}).id != NewScope("k", map[string]string{"y": "2", "x": "1"}).id {
		t.Fatal("equal contexts have different scopes")
	}
}

func TestEncryptionFailuresAreNotCached(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	throttled := &types.LimitExceededException{Message: aws.String("slow down")}
	gomock.InOrder(
		m.EXPECT().GenerateDataKey(gomock.Any(), gomock.Any()).Return(nil, throttled),
		m.EXPECT().GenerateDataKey(gomock.Any(), gomock.Any()).Return(generated(1), nil),
	)
	c, _ := NewEncryptionKeys(m, EncryptionOptions{}, identity)
	_, _, err := c.Get(NewScope("alias/k", nil), 1)
	var kmsErr *KMSError
	var limit *types.LimitExceededException
	if !errors.As(err, &kmsErr) || !errors.As(err, &limit) || kmsErr.Op != "GenerateDataKey" || !kmsErr.Transient() {
		t.Fatalf("got %v, want a transient KMSError wrapping LimitExceededException", err)
	}
	if v, _, err := c.Get(NewScope("alias/k", nil), 1); err != nil || v != "wrapped-1" {
		t.Fatalf("after the failure: %q, %v", v, err)
	}
}

func TestInvalidGenerateDataKeyResponsesAreRejected(t *testing.T) {
	tests := []struct {
		name string
		out  *awskms.GenerateDataKeyOutput
	}{
		{"key ID is an alias", &awskms.GenerateDataKeyOutput{KeyId: aws.String("alias/k"), Plaintext: make([]byte, 32), CiphertextBlob: []byte("w")}},
		{"no key ID", &awskms.GenerateDataKeyOutput{Plaintext: make([]byte, 32), CiphertextBlob: []byte("w")}},
		{"16-byte data key", &awskms.GenerateDataKeyOutput{KeyId: aws.String(keyARN), Plaintext: make([]byte, 16), CiphertextBlob: []byte("w")}},
		{"no wrapped key", &awskms.GenerateDataKeyOutput{KeyId: aws.String(keyARN), Plaintext: make([]byte, 32)}},
		{"no output", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mocks.NewMockAPI(gomock.NewController(t))
			m.EXPECT().GenerateDataKey(gomock.Any(), gomock.Any()).Return(tt.out, nil)
			c, _ := NewEncryptionKeys(m, EncryptionOptions{}, identity)
			if _, _, err := c.Get(NewScope("alias/k", nil), 1); !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("got %v, want ErrInvalidResponse", err)
			}
		})
	}
}

func TestPrepareFailureIsReturned(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	countingGenerate(m)
	boom := errors.New("boom")
	c, _ := NewEncryptionKeys(m, EncryptionOptions{}, func(DataKey) (string, error) { return "", boom })
	if _, _, err := c.Get(NewScope("alias/k", nil), 1); !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
}

func TestKMSCallsAreBoundedByTheTimeout(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	m.EXPECT().GenerateDataKey(gomock.Any(), gomock.Any()).DoAndReturn(
		func(ctx context.Context, _ *awskms.GenerateDataKeyInput, _ ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
	c, _ := NewEncryptionKeys(m, EncryptionOptions{Timeout: 20 * time.Millisecond}, identity)
	_, _, err := c.Get(NewScope("alias/k", nil), 1)
	var kmsErr *KMSError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &kmsErr) || !kmsErr.Transient() {
		t.Fatalf("got %v, want a transient deadline error", err)
	}
}

func TestOptionsAreValidated(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	for _, o := range []EncryptionOptions{{MaxAge: -1}, {MaxPayloads: -1}, {MaxBytes: -1}, {MaxScopes: -1}, {Timeout: -1}} {
		if _, err := NewEncryptionKeys(m, o, identity); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	for _, o := range []DecryptionOptions{{Size: -1}, {TTL: -1}, {Timeout: -1}, {NegativeSize: -1}} {
		if _, err := NewDecryptionKeys(m, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if _, err := NewEncryptionKeys[string](nil, EncryptionOptions{}, identity); err == nil {
		t.Error("nil KMS accepted")
	}
	if _, err := NewEncryptionKeys[string](m, EncryptionOptions{}, nil); err == nil {
		t.Error("nil prepare accepted")
	}
	if _, err := NewDecryptionKeys(nil, DecryptionOptions{}); err == nil {
		t.Error("nil KMS accepted")
	}
	if _, err := NewKeyResolver(m, "", ResolverOptions{}); err == nil {
		t.Error("empty key ID accepted")
	}
}

// wrapped returns a real wrapped data key of fake, with its plaintext.
func wrapped(t *testing.T, fake *kmstest.KMS, arn string, ctx map[string]string) (WrappedKey, []byte) {
	t.Helper()
	out, err := fake.GenerateDataKey(context.Background(), &awskms.GenerateDataKeyInput{KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256, EncryptionContext: ctx})
	if err != nil {
		t.Fatal(err)
	}
	return WrappedKey{
		Identity:          arn + "|" + string(out.CiphertextBlob),
		KeyARN:            arn,
		Blob:              out.CiphertextBlob,
		EncryptionContext: func() (map[string]string, error) { return ctx, nil },
	}, out.Plaintext
}

func TestDecryptionKeyIsUnwrappedOnceThenCached(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	w, plaintext := wrapped(t, fake, arn, map[string]string{"temporal-namespace": "ns"})
	c, _ := NewDecryptionKeys(fake, DecryptionOptions{})
	for range 10 {
		k, err := c.Get(w)
		if err != nil || !bytes.Equal(k, plaintext) {
			t.Fatalf("got %x, %v", k, err)
		}
	}
	if n := fake.Calls("Decrypt"); n != 1 {
		t.Fatalf("%d Decrypt calls, want 1", n)
	}
}

func TestDecryptionKeyExpiresAfterTTL(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	w, _ := wrapped(t, fake, arn, nil)
	clk := newClock()
	c, _ := NewDecryptionKeys(fake, DecryptionOptions{TTL: time.Hour, Clock: clk.Now})
	c.Get(w)
	clk.Advance(59 * time.Minute)
	c.Get(w)
	clk.Advance(time.Minute)
	c.Get(w)
	if n := fake.Calls("Decrypt"); n != 2 {
		t.Fatalf("%d Decrypt calls, want 2", n)
	}
}

func TestDecryptionCacheIsBoundedBySize(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	c, _ := NewDecryptionKeys(fake, DecryptionOptions{Size: 8})
	var keys []WrappedKey
	for range 20 {
		w, _ := wrapped(t, fake, arn, nil)
		keys = append(keys, w)
		if _, err := c.Get(w); err != nil {
			t.Fatal(err)
		}
	}
	if c.held() != 8 {
		t.Fatalf("%d keys held, want 8", c.held())
	}
	before := fake.Calls("Decrypt")
	c.Get(keys[0]) // evicted long ago
	c.Get(keys[19])
	if got := fake.Calls("Decrypt") - before; got != 1 {
		t.Fatalf("%d Decrypt calls, want 1 (only the evicted key)", got)
	}
}

// A key in use moves to the front of the LRU order once per
// touchInterval, so it outlives a key that is not used.
func TestDecryptionCacheEvictsTheLeastRecentlyUsedKey(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	clk := newClock()
	c, _ := NewDecryptionKeys(fake, DecryptionOptions{Size: 2, Clock: clk.Now})
	a, _ := wrapped(t, fake, arn, nil)
	b, _ := wrapped(t, fake, arn, nil)
	c.Get(a)
	c.Get(b)
	clk.Advance(touchInterval)
	c.Get(a) // a is now the most recently used
	third, _ := wrapped(t, fake, arn, nil)
	c.Get(third) // evicts b
	before := fake.Calls("Decrypt")
	c.Get(a)
	if got := fake.Calls("Decrypt") - before; got != 0 {
		t.Fatalf("%d Decrypt calls for the key in use, want 0", got)
	}
	c.Get(b)
	if got := fake.Calls("Decrypt") - before; got != 1 {
		t.Fatalf("%d Decrypt calls in all, want 1 (the evicted key)", got)
	}
}

func TestConcurrentColdDecryptsShareOneKMSCall(t *testing.T) {
	fake := kmstest.New()
	arn := fake.CreateKey()
	w, plaintext := wrapped(t, fake, arn, nil)
	m := mocks.NewMockAPI(gomock.NewController(t))
	release := make(chan struct{})
	m.EXPECT().Decrypt(gomock.Any(), gomock.Any()).DoAndReturn(
		func(ctx context.Context, in *awskms.DecryptInput, opt ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
			<-release
			return fake.Decrypt(ctx, in, opt...)
		}).Times(1)
	c, _ := NewDecryptionKeys(m, DecryptionOptions{})
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			if k, err := c.Get(w); err != nil || !bytes.Equal(k, plaintext) {
				t.Errorf("got %x, %v", k, err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
}

func TestDecryptNamesTheKeyAndTheContext(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	ctx := map[string]string{"temporal-namespace": "ns"}
	m.EXPECT().Decrypt(gomock.Any(), gomock.Any()).DoAndReturn(
		func(_ context.Context, in *awskms.DecryptInput, _ ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
			if aws.ToString(in.KeyId) != keyARN || in.EncryptionContext["temporal-namespace"] != "ns" || string(in.CiphertextBlob) != "blob" {
				t.Errorf("Decrypt input %+v", in)
			}
			return &awskms.DecryptOutput{KeyId: aws.String(keyARN), Plaintext: make([]byte, 32)}, nil
		})
	c, _ := NewDecryptionKeys(m, DecryptionOptions{})
	if _, err := c.Get(WrappedKey{Identity: "x", KeyARN: keyARN, Blob: []byte("blob"), EncryptionContext: func() (map[string]string, error) { return ctx, nil }}); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidDecryptResponsesAreRejected(t *testing.T) {
	tests := []struct {
		name string
		out  *awskms.DecryptOutput
	}{
		{"another key decrypted it", &awskms.DecryptOutput{KeyId: aws.String(keyARN + "0"), Plaintext: make([]byte, 32)}},
		{"no key ID", &awskms.DecryptOutput{Plaintext: make([]byte, 32)}},
		{"16-byte data key", &awskms.DecryptOutput{KeyId: aws.String(keyARN), Plaintext: make([]byte, 16)}},
		{"no output", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mocks.NewMockAPI(gomock.NewController(t))
			m.EXPECT().Decrypt(gomock.Any(), gomock.Any()).Return(tt.out, nil)
			c, _ := NewDecryptionKeys(m, DecryptionOptions{})
			_, err := c.Get(WrappedKey{Identity: "x", KeyARN: keyARN, Blob: []byte("b"), EncryptionContext: noContext})
			if !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("got %v, want ErrInvalidResponse", err)
			}
			if c.held() != 0 {
				t.Fatal("a rejected answer was cached")
			}
		})
	}
}

func noContext() (map[string]string, error) { return nil, nil }

func TestUnparsableContextMakesNoKMSCall(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t)) // any call fails the test
	c, _ := NewDecryptionKeys(m, DecryptionOptions{})
	bad := errors.New("bad context")
	_, err := c.Get(WrappedKey{Identity: "x", KeyARN: keyARN, Blob: []byte("b"), EncryptionContext: func() (map[string]string, error) { return nil, bad }})
	if !errors.Is(err, bad) {
		t.Fatalf("got %v", err)
	}
}

func TestKMSRejectionsAreRememberedForNegativeTTL(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	var calls atomic.Int32
	m.EXPECT().Decrypt(gomock.Any(), gomock.Any()).DoAndReturn(
		func(context.Context, *awskms.DecryptInput, ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
			calls.Add(1)
			return nil, &types.InvalidCiphertextException{Message: aws.String("no")}
		}).AnyTimes()
	clk := newClock()
	c, _ := NewDecryptionKeys(m, DecryptionOptions{NegativeTTL: 10 * time.Second, Clock: clk.Now})
	w := WrappedKey{Identity: "bogus", KeyARN: keyARN, Blob: []byte("bogus"), EncryptionContext: noContext}
	for range 1000 {
		_, err := c.Get(w)
		var invalid *types.InvalidCiphertextException
		if !errors.As(err, &invalid) {
			t.Fatalf("got %v", err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("%d Decrypt calls for 1,000 payloads with one bogus key, want 1", calls.Load())
	}
	clk.Advance(10 * time.Second)
	c.Get(w)
	if calls.Load() != 2 {
		t.Fatalf("%d Decrypt calls after the negative TTL, want 2", calls.Load())
	}
}

func TestTransientKMSFailuresAreNotRemembered(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t))
	throttled := &smithy.GenericAPIError{Code: "ThrottlingException", Fault: smithy.FaultClient}
	m.EXPECT().Decrypt(gomock.Any(), gomock.Any()).Return(nil, throttled).Times(3)
	c, _ := NewDecryptionKeys(m, DecryptionOptions{})
	w := WrappedKey{Identity: "x", KeyARN: keyARN, Blob: []byte("b"), EncryptionContext: noContext}
	for range 3 {
		if _, err := c.Get(w); !errors.As(err, new(*smithy.GenericAPIError)) {
			t.Fatalf("got %v", err)
		}
	}
}

func TestTransientClassification(t *testing.T) {
	tests := []struct {
		err       error
		transient bool
	}{
		{&types.InvalidCiphertextException{}, false},
		{&types.IncorrectKeyException{}, false},
		{&types.NotFoundException{}, false},
		{&types.DisabledException{}, false},
		{&types.KMSInvalidStateException{}, false},
		{&smithy.GenericAPIError{Code: "AccessDeniedException", Fault: smithy.FaultClient}, false},
		{fmt.Errorf("%w: short key", ErrInvalidResponse), false},
		{&smithy.GenericAPIError{Code: "ThrottlingException", Fault: smithy.FaultClient}, true},
		{&types.LimitExceededException{}, true},
		{&types.KMSInternalException{}, true},
		{&types.DependencyTimeoutException{}, true},
		{&smithy.GenericAPIError{Code: "InternalFailure", Fault: smithy.FaultServer}, true},
		{context.DeadlineExceeded, true},
		{errors.New("connection reset by peer"), true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%T %v", tt.err, tt.err), func(t *testing.T) {
			if got := (&KMSError{Err: tt.err}).Transient(); got != tt.transient {
				t.Fatalf("Transient() = %v, want %v", got, tt.transient)
			}
		})
	}
}

func TestRefusedCiphertextClassification(t *testing.T) {
	tests := []struct {
		op      string
		err     error
		refused bool
	}{
		{"Decrypt", &types.InvalidCiphertextException{}, true},
		{"Decrypt", &types.IncorrectKeyException{}, true},
		{"Decrypt", &smithy.GenericAPIError{Code: "InvalidCiphertextException", Fault: smithy.FaultClient}, true},
		{"Decrypt", &smithy.GenericAPIError{Code: "AccessDeniedException", Fault: smithy.FaultClient}, false},
		{"Decrypt", &types.DisabledException{}, false},
		{"Decrypt", &types.KMSInternalException{}, false},
		{"Decrypt", context.DeadlineExceeded, false},
		{"GenerateDataKey", &types.InvalidCiphertextException{}, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %T", tt.op, tt.err), func(t *testing.T) {
			if got := (&KMSError{Op: tt.op, Err: tt.err}).RefusedCiphertext(); got != tt.refused {
				t.Fatalf("RefusedCiphertext() = %v, want %v", got, tt.refused)
			}
		})
	}
}

func TestAddedKeysNeedNoKMSCall(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t)) // any call fails the test
	c, _ := NewDecryptionKeys(m, DecryptionOptions{})
	key := bytes.Repeat([]byte{9}, 32)
	c.Add("id", key)
	key[0] = 0 // the cache kept its own copy
	got, err := c.Get(WrappedKey{Identity: "id"})
	if err != nil || got[0] != 9 {
		t.Fatalf("got %x, %v", got, err)
	}
}

func TestCachedCountsHitsAndLeavesMissesToGet(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t)) // any call fails the test
	var events []Event
	c, _ := NewDecryptionKeys(m, DecryptionOptions{Record: func(e Event) { events = append(events, e) }})
	if _, ok := c.Cached("id"); ok || len(events) != 0 {
		t.Fatalf("empty cache: hit %v, events %v", ok, events)
	}
	c.Add("id", bytes.Repeat([]byte{9}, 32))
	if got, ok := c.Cached("id"); !ok || got[0] != 9 || !slices.Equal(events, []Event{DecryptHit}) {
		t.Fatalf("got %x, %v, events %v", got, ok, events)
	}
}

func TestKeyARNResolvesToItselfWithoutACall(t *testing.T) {
	m := mocks.NewMockAPI(gomock.NewController(t)) // any call fails the test
	r, _ := NewKeyResolver(m, keyARN, ResolverOptions{TTL: time.Minute})
	if arn, err := r.ARN(); err != nil || arn != keyARN {
		t.Fatalf("got %q, %v", arn, err)
	}
}

func TestAliasIsResolvedOnceAndRefreshedAfterTTL(t *testing.T) {
	fake := kmstest.New()
	a, b := fake.CreateKey(), fake.CreateKey()
	fake.SetAlias("alias/temporal", a)
	clk := newClock()
	r, _ := NewKeyResolver(fake, "alias/temporal", ResolverOptions{TTL: time.Minute, Clock: clk.Now})
	for range 5 {
		if arn, err := r.ARN(); err != nil || arn != a {
			t.Fatalf("got %q, %v", arn, err)
		}
	}
	fake.SetAlias("alias/temporal", b)
	clk.Advance(time.Minute)
	if arn, _ := r.ARN(); arn != b {
		t.Fatalf("after the alias moved and the TTL passed: %q, want %q", arn, b)
	}
	if n := fake.Calls("DescribeKey"); n != 2 {
		t.Fatalf("%d DescribeKey calls, want 2", n)
	}
	r.Observe(a)
	if arn, _ := r.ARN(); arn != a || fake.Calls("DescribeKey") != 2 {
		t.Fatal("an observed ARN was not used")
	}
}

func TestResolverFailureIsAKMSError(t *testing.T) {
	fake := kmstest.New()
	r, _ := NewKeyResolver(fake, "alias/missing", ResolverOptions{TTL: time.Minute})
	_, err := r.ARN()
	var notFound *types.NotFoundException
	var kmsErr *KMSError
	if !errors.As(err, &notFound) || !errors.As(err, &kmsErr) || kmsErr.Op != "DescribeKey" {
		t.Fatalf("got %v", err)
	}
}
