package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	kmsconfig "github.com/nsmithuk/local-kms/src/config"
	"github.com/nsmithuk/local-kms/src/data"
	"github.com/nsmithuk/local-kms/src/handler"
	"github.com/sirupsen/logrus"
)

// Region and AccountID are the region and account every emulator in this
// process reports in its key ARNs. local-kms keeps them in package-level
// globals, so all instances in one process necessarily share them; clients
// must be configured with the same Region because the emulator builds ARNs
// for aliases and key IDs from it.
const (
	Region    = "us-east-1"
	AccountID = "111122223333"
)

// configureEmulator sets local-kms' process-wide settings once.
var configureEmulator = sync.OnceFunc(func() {
	kmsconfig.AWSRegion = Region
	kmsconfig.AWSAccountId = AccountID
})

// KMS is a running local-kms emulator. Calls are counted at the HTTP handler,
// that is at the "KMS service" itself, so tests can assert how many requests
// a codec really made instead of trusting the codec's own statistics.
type KMS struct {
	// URL is the emulator's endpoint, http://127.0.0.1:PORT.
	URL string
	// Client is an aws-sdk-go-v2 KMS client for URL. It is safe for
	// concurrent use; use NewClient to get an independent one.
	Client *kms.Client

	server *httptest.Server
	db     *data.Database
	logger *logrus.Logger

	mu     sync.Mutex
	calls  map[string]int64
	errors map[string]int64
}

// StartKMS starts an emulator with an empty key store in a temporary
// directory and stops it when the test ends.
func StartKMS(t testing.TB) *KMS {
	t.Helper()
	k, err := NewKMS(t.TempDir())
	if err != nil {
		t.Fatalf("start KMS emulator: %v", err)
	}
	t.Cleanup(k.Close)
	return k
}

// NewKMS starts an emulator that keeps its key store in dir (which must be
// used by one emulator at a time). Call Close to stop it.
func NewKMS(dir string) (k *KMS, err error) {
	configureEmulator()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// local-kms panics when the store cannot be opened.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("open local-kms store: %v", r)
		}
	}()
	logger := logrus.New()
	// The emulator logs every call, some with request contents; tests
	// must not print ciphertexts or key IDs, so its log is dropped.
	logger.SetOutput(io.Discard)
	k = &KMS{
		db:     data.NewDatabase(dir),
		logger: logger,
		calls:  map[string]int64{},
		errors: map[string]int64{},
	}
	// httptest binds 127.0.0.1 on a free port.
	k.server = httptest.NewServer(http.HandlerFunc(k.serveHTTP))
	k.URL = k.server.URL
	k.Client = k.NewClient()
	return k, nil
}

// Close stops the emulator and closes its key store.
func (k *KMS) Close() {
	k.server.Close()
	k.db.Close()
}

// NewClient returns a new aws-sdk-go-v2 KMS client for the emulator, with
// its own connection pool, as a separate process would have.
func (k *KMS) NewClient() *kms.Client { return NewKMSClient(k.URL) }

// NewKMSClient returns an aws-sdk-go-v2 KMS client for the emulator at url
// (a KMS.URL or a FaultProxy.URL), for use in another process, changed by
// optFns. Credentials are static dummies: the emulator does not check
// signatures, but the SDK still signs every request as it would for AWS.
func NewKMSClient(url string, optFns ...func(*kms.Options)) *kms.Client {
	cfg := aws.Config{
		Region:      Region,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDLOCALKMS", "local-kms-secret", ""),
	}
	return kms.NewFromConfig(cfg, append([]func(*kms.Options){func(o *kms.Options) {
		o.BaseEndpoint = aws.String(url)
	}}, optFns...)...)
}

// FewRetries makes a KMS client try each call at most attempts times,
// with backoffs of at most maxBackoff and no retry quota, so that the
// faults a test injects reach the codec within a test's time instead of
// being absorbed by the SDK's default three attempts with backoffs of up
// to 20 seconds.
func FewRetries(attempts int, maxBackoff time.Duration) func(*kms.Options) {
	return func(o *kms.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = attempts
			so.MaxBackoff = maxBackoff
			so.RateLimiter = ratelimit.None
		})
	}
}

// serveHTTP counts the call by its X-Amz-Target operation and dispatches it
// to local-kms' handler, the same way local-kms' own server does, but with
// a logger that does not print request contents.
func (k *KMS) serveHTTP(w http.ResponseWriter, r *http.Request) {
	op := operation(r)
	k.mu.Lock()
	k.calls[op]++
	k.mu.Unlock()

	code, body := k.dispatch(r, op)
	if code >= 400 {
		k.mu.Lock()
		k.errors[op]++
		k.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

func (k *KMS) dispatch(r *http.Request, op string) (int, string) {
	if r.Method != http.MethodPost || r.URL.Path != "/" || !strings.Contains(r.Header.Get("Content-Type"), "json") {
		return http.StatusBadRequest, `{"__type":"ValidationException","message":"unsupported request"}`
	}
	h := handler.NewRequestHandler(r, k.logger, k.db)
	m := reflect.ValueOf(h).MethodByName(op)
	if !m.IsValid() || m.Type().NumIn() != 0 || m.Type().NumOut() != 1 {
		return http.StatusNotImplemented, fmt.Sprintf(`{"__type":"UnsupportedOperationException","message":%q}`, op)
	}
	resp, ok := m.Call(nil)[0].Interface().(handler.Response)
	if !ok {
		return http.StatusInternalServerError, `{"__type":"KMSInternalException"}`
	}
	return resp.Code, resp.Body
}

// operation returns the KMS operation named by the X-Amz-Target header
// ("TrentService.GenerateDataKey" -> "GenerateDataKey").
func operation(r *http.Request) string {
	target := r.Header.Get("X-Amz-Target")
	if i := strings.LastIndexByte(target, '.'); i >= 0 {
		return target[i+1:]
	}
	return target
}

// Operation names accepted by Calls and Errors.
const (
	OpGenerateDataKey = "GenerateDataKey"
	OpDecrypt         = "Decrypt"
	OpDescribeKey     = "DescribeKey"
)

// Calls returns how many requests for op (e.g. OpGenerateDataKey) the
// emulator has received, including failed ones.
func (k *KMS) Calls(op string) int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[op]
}

// Errors returns how many requests for op the emulator answered with an
// error status.
func (k *KMS) Errors(op string) int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.errors[op]
}

// CallCounts returns a copy of all per-operation call counts.
func (k *KMS) CallCounts() map[string]int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]int64, len(k.calls))
	for op, n := range k.calls {
		out[op] = n
	}
	return out
}

// String formats the call counts as "Op=N ..." sorted by operation, for
// logs.
func (k *KMS) String() string {
	counts := k.CallCounts()
	ops := make([]string, 0, len(counts))
	for op := range counts {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	var b strings.Builder
	for i, op := range ops {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", op, counts[op])
	}
	return b.String()
}

// CreateKey creates a symmetric encryption key through the KMS API and
// returns its ARN.
func (k *KMS) CreateKey(ctx context.Context, description string) (string, error) {
	out, err := k.Client.CreateKey(ctx, &kms.CreateKeyInput{
		Description: aws.String(description),
		KeySpec:     types.KeySpecSymmetricDefault,
		KeyUsage:    types.KeyUsageTypeEncryptDecrypt,
	})
	if err != nil {
		return "", fmt.Errorf("CreateKey: %w", err)
	}
	return aws.ToString(out.KeyMetadata.Arn), nil
}

// CreateAlias points the new alias (which must start with "alias/") at
// keyID.
func (k *KMS) CreateAlias(ctx context.Context, alias, keyID string) error {
	_, err := k.Client.CreateAlias(ctx, &kms.CreateAliasInput{
		AliasName:   aws.String(alias),
		TargetKeyId: aws.String(keyID),
	})
	if err != nil {
		return fmt.Errorf("CreateAlias: %w", err)
	}
	return nil
}

// UpdateAlias moves an existing alias to keyID, which is how a key is
// rotated when the codec is configured with an alias.
func (k *KMS) UpdateAlias(ctx context.Context, alias, keyID string) error {
	_, err := k.Client.UpdateAlias(ctx, &kms.UpdateAliasInput{
		AliasName:   aws.String(alias),
		TargetKeyId: aws.String(keyID),
	})
	if err != nil {
		return fmt.Errorf("UpdateAlias: %w", err)
	}
	return nil
}

// MustCreateKey is CreateKey that fails the test on error.
func (k *KMS) MustCreateKey(t testing.TB, description string) string {
	t.Helper()
	arn, err := k.CreateKey(context.Background(), description)
	if err != nil {
		t.Fatal(err)
	}
	return arn
}

// MustCreateAlias is CreateAlias that fails the test on error.
func (k *KMS) MustCreateAlias(t testing.TB, alias, keyID string) {
	t.Helper()
	if err := k.CreateAlias(context.Background(), alias, keyID); err != nil {
		t.Fatal(err)
	}
}

// MustUpdateAlias is UpdateAlias that fails the test on error.
func (k *KMS) MustUpdateAlias(t testing.TB, alias, keyID string) {
	t.Helper()
	if err := k.UpdateAlias(context.Background(), alias, keyID); err != nil {
		t.Fatal(err)
	}
}
