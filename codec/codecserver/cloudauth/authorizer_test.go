package cloudauth_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	identity "go.temporal.io/cloud-sdk/api/identity/v1"
	resource "go.temporal.io/cloud-sdk/api/resource/v1"
	"go.temporal.io/cloud-sdk/cloudclient"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"

	"github.com/temporal-kms/kmscodec/codec/codecserver/cloudauth"
)

// Every test leaves no goroutine behind: lookups that time out end, and
// the cache starts none of its own.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	read  = false
	write = true
)

type perms = map[string]identity.NamespaceAccess_Permission

// isUnavailable is how a server tells a 503 from a 403.
func isUnavailable(err error) bool {
	var u interface{ Unavailable() bool }
	return errors.As(err, &u) && u.Unavailable()
}

func TestNamespacePermissionDecidesDecodeAndEncode(t *testing.T) {
	cases := []struct {
		permission           identity.NamespaceAccess_Permission
		mayDecode, mayEncode bool
	}{
		{identity.NamespaceAccess_PERMISSION_READ, true, false},
		{identity.NamespaceAccess_PERMISSION_WRITE, true, true},
		{identity.NamespaceAccess_PERMISSION_ADMIN, true, true},
		{identity.NamespaceAccess_PERMISSION_UNSPECIFIED, false, false},
	}
	for _, c := range cases {
		t.Run(c.permission.String(), func(t *testing.T) {
			f := startFakeCloud(t, user("dev@example.com", identity.AccountAccess_ROLE_DEVELOPER, perms{"orders": c.permission}))
			a := newAuthorizer(t, f, nil)
			for _, op := range []struct {
				write, allowed bool
			}{{read, c.mayDecode}, {write, c.mayEncode}} {
				err := a.AuthorizeNamespace(context.Background(), "dev@example.com", "orders", op.write)
				if op.allowed && err != nil {
					t.Errorf("write=%v: %v, want allowed", op.write, err)
				}
				if !op.allowed && !errors.Is(err, cloudauth.ErrNoAccess) {
					t.Errorf("write=%v: %v, want ErrNoAccess", op.write, err)
				}
			}
		})
	}
}

func TestReadOnlyUserMayDecodeButNotEncode(t *testing.T) {
	f := startFakeCloud(t, user("reader@example.com", identity.AccountAccess_ROLE_READ, perms{"orders": identity.NamespaceAccess_PERMISSION_READ}))
	a := newAuthorizer(t, f, nil)
	if err := a.AuthorizeNamespace(context.Background(), "reader@example.com", "orders", read); err != nil {
		t.Fatalf("decode: %v", err)
	}
	err := a.AuthorizeNamespace(context.Background(), "reader@example.com", "orders", write)
	if !errors.Is(err, cloudauth.ErrNoAccess) || isUnavailable(err) {
		t.Fatalf("encode: %v, want ErrNoAccess", err)
	}
	if !strings.Contains(err.Error(), "may not write") {
		t.Errorf("error %q does not say what was refused", err)
	}
}

func TestUserWithoutAccessToTheNamespaceIsRefused(t *testing.T) {
	f := startFakeCloud(t, user("dev@example.com", identity.AccountAccess_ROLE_DEVELOPER, perms{"orders": identity.NamespaceAccess_PERMISSION_WRITE}))
	a := newAuthorizer(t, f, nil)
	err := a.AuthorizeNamespace(context.Background(), "dev@example.com", "payments", read)
	if !errors.Is(err, cloudauth.ErrNoAccess) || isUnavailable(err) {
		t.Fatalf("got %v, want ErrNoAccess", err)
	}
}

func TestAccountOwnerAndGlobalAdminMayReadAndWriteEveryNamespace(t *testing.T) {
	f := startFakeCloud(t,
		user("owner@example.com", identity.AccountAccess_ROLE_OWNER, nil),
		user("admin@example.com", identity.AccountAccess_ROLE_ADMIN, perms{"orders": identity.NamespaceAccess_PERMISSION_READ}))
	a := newAuthorizer(t, f, nil)
	for _, who := range []string{"owner@example.com", "admin@example.com"} {
		for _, ns := range []string{"orders", "payments"} {
			for _, w := range []bool{read, write} {
				if err := a.AuthorizeNamespace(context.Background(), who, ns, w); err != nil {
					t.Errorf("%s %s write=%v: %v", who, ns, w, err)
				}
			}
		}
	}
}

func TestOtherAccountRolesGrantNoNamespace(t *testing.T) {
	roles := []identity.AccountAccess_Role{
		identity.AccountAccess_ROLE_DEVELOPER,
		identity.AccountAccess_ROLE_READ,
		identity.AccountAccess_ROLE_FINANCE_ADMIN,
		identity.AccountAccess_ROLE_METRICS_READ,
		identity.AccountAccess_ROLE_UNSPECIFIED,
	}
	var users []*identity.User
	for _, r := range roles {
		users = append(users, user(strings.ToLower(r.String())+"@example.com", r, nil))
	}
	f := startFakeCloud(t, users...)
	a := newAuthorizer(t, f, nil)
	for _, r := range roles {
		err := a.AuthorizeNamespace(context.Background(), strings.ToLower(r.String())+"@example.com", "orders", read)
		if !errors.Is(err, cloudauth.ErrNoAccess) {
			t.Errorf("%s: %v, want ErrNoAccess", r, err)
		}
	}
}

func TestUnknownUserIsRefused(t *testing.T) {
	f := startFakeCloud(t, user("dev@example.com", identity.AccountAccess_ROLE_OWNER, nil))
	a := newAuthorizer(t, f, nil)
	err := a.AuthorizeNamespace(context.Background(), "stranger@example.com", "orders", read)
	if !errors.Is(err, cloudauth.ErrUnknownUser) || isUnavailable(err) {
		t.Fatalf("got %v, want ErrUnknownUser", err)
	}
	if got := f.lastRequest().GetEmail(); got != "stranger@example.com" {
		t.Errorf("GetUsers asked for email %q", got)
	}
}

func TestDeletedOrSuspendedUserIsRefusedEverywhere(t *testing.T) {
	deleted := user("gone@example.com", identity.AccountAccess_ROLE_OWNER, nil)
	deleted.State = resource.ResourceState_RESOURCE_STATE_DELETED
	suspended := user("paused@example.com", identity.AccountAccess_ROLE_DEVELOPER, perms{"orders": identity.NamespaceAccess_PERMISSION_ADMIN})
	suspended.State = resource.ResourceState_RESOURCE_STATE_SUSPENDED
	f := startFakeCloud(t, deleted, suspended)
	a := newAuthorizer(t, f, nil)
	for _, who := range []string{"gone@example.com", "paused@example.com"} {
		if err := a.AuthorizeNamespace(context.Background(), who, "orders", read); !errors.Is(err, cloudauth.ErrNoAccess) {
			t.Errorf("%s: %v, want ErrNoAccess", who, err)
		}
	}
}

func TestIdentityThatIsNotAnEmailIsRefusedWithoutAskingTheAPI(t *testing.T) {
	f := startFakeCloud(t, user("dev@example.com", identity.AccountAccess_ROLE_OWNER, nil))
	a := newAuthorizer(t, f, nil)
	for _, id := range []string{"", "   ", "auth0|1234567890", strings.Repeat("a", 400) + "@example.com"} {
		err := a.AuthorizeNamespace(context.Background(), id, "orders", read)
		if !errors.Is(err, cloudauth.ErrUnknownUser) {
			t.Errorf("identity %.20q: %v, want ErrUnknownUser", id, err)
		}
	}
	if err := a.AuthorizeNamespace(context.Background(), "dev@example.com", "", read); !errors.Is(err, cloudauth.ErrNoAccess) {
		t.Errorf("empty namespace: %v, want ErrNoAccess", err)
	}
	if n := f.arrived(); n != 0 {
		t.Errorf("%d API calls, want 0", n)
	}
}

func TestEmailIsComparedWithoutRegardToCase(t *testing.T) {
	f := startFakeCloud(t, user("alice@example.com", identity.AccountAccess_ROLE_DEVELOPER, perms{"orders": identity.NamespaceAccess_PERMISSION_READ}))
	a := newAuthorizer(t, f, nil)
	for _, id := range []string{"Alice@Example.COM", "alice@EXAMPLE.com", "alice@example.com"} {
		if err := a.AuthorizeNamespace(context.Background(), id, "orders", read); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("%d API calls for three spellings of one email, want 1", n)
	}
}

func TestUserOnALaterPageIsFound(t *testing.T) {
	f := startFakeCloud(t,
		user("alice.smith@example.com", identity.AccountAccess_ROLE_OWNER, nil),
		user("bob@example.com", identity.AccountAccess_ROLE_OWNER, nil),
		user("alice@example.com", identity.AccountAccess_ROLE_DEVELOPER, perms{"orders": identity.NamespaceAccess_PERMISSION_READ}))
	f.pageSize = 1
	f.ignoreEmailFilter = true // the worst the API could do: list everyone
	a := newAuthorizer(t, f, nil)
	if err := a.AuthorizeNamespace(context.Background(), "alice@example.com", "orders", read); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 3 {
		t.Errorf("%d API calls, want one per page (3)", n)
	}
	// The other users on the pages read must not have been taken for her.
	if err := a.AuthorizeNamespace(context.Background(), "alice@example.com", "payments", read); !errors.Is(err, cloudauth.ErrNoAccess) {
		t.Errorf("payments: %v, want ErrNoAccess", err)
	}
}

func TestEndlessPagingIsUnavailable(t *testing.T) {
	var users []*identity.User
	for i := range 20 {
		users = append(users, user(fmt.Sprintf("u%d@example.com", i), identity.AccountAccess_ROLE_OWNER, nil))
	}
	f := startFakeCloud(t, users...)
	f.pageSize = 1
	f.ignoreEmailFilter = true
	a := newAuthorizer(t, f, nil)
	err := a.AuthorizeNamespace(context.Background(), "nobody@example.com", "orders", read)
	if !isUnavailable(err) {
		t.Fatalf("got %v, want unavailable", err)
	}
	if n := f.calls.Load(); n != 10 {
		t.Errorf("%d API calls, want 10 (the page limit)", n)
	}
}

func TestUnreachableAPIFailsClosedAsUnavailable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	a, err := cloudauth.New(cloudauth.Options{Endpoint: addr, APIKey: testAPIKey, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for range 2 { // a failure is not remembered as anything
		err = a.AuthorizeNamespace(context.Background(), "dev@example.com", "orders", read)
		var unavailable *cloudauth.UnavailableError
		if !errors.As(err, &unavailable) || !isUnavailable(err) {
			t.Fatalf("got %v, want *UnavailableError", err)
		}
		if errors.Is(err, cloudauth.ErrNoAccess) || errors.Is(err, cloudauth.ErrUnknownUser) {
			t.Fatalf("%v blames the user for the API being down", err)
		}
		if strings.Contains(err.Error(), testAPIKey) {
			t.Fatalf("error %q contains the API key", err)
		}
	}
}

func TestSlowAPIFailsAfterTimeout(t *testing.T) {
	f := startFakeCloud(t, user("dev@example.com", identity.AccountAccess_ROLE_OWNER, nil))
	f.holdCalls()
	a := newAuthorizer(t, f, func(o *cloudauth.Options) { o.Timeout = 200 * time.Millisecond })
	start := time.Now()
	err := a.AuthorizeNamespace(context.Background(), "dev@example.com", "orders", read)
	elapsed := time.Since(start)
	if !isUnavailable(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want unavailable after the deadline", err)
	}
	if elapsed < 200*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("took %v, want about the 200ms Timeout", elapsed)
	}
	// Once the API answers again, so does the authorizer: the timeout
	// was not remembered.
	f.release()
	if err := a.AuthorizeNamespace(context.Background(), "dev@example.com", "orders", read); err != nil {
		t.Fatal(err)
	}
}

func TestCallerWhoseRequestEndsStopsWaiting(t *testing.T) {
	f := startFakeCloud(t, user("dev@example.com", identity.AccountAccess_ROLE_OWNER, nil))
	f.holdCalls()
	a := newAuthorizer(t, f, func(o *cloudauth.Options) { o.Timeout = 10 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := a.AuthorizeNamespace(ctx, "dev@example.com", "orders", read)
	if !isUnavailable(err) || time.Since(start) > 2*time.Second {
		t.Fatalf("got %v after %v, want unavailable after about 100ms", err, time.Since(start))
	}
}

func TestAPIErrorsAreUnavailableAndNotRemembered(t *testing.T) {
	f := startFakeCloud(t, user("dev@example.com", identity.AccountAccess_ROLE_DEVELOPER, perms{"orders": identity.NamespaceAccess_PERMISSION_READ}))
	f.failNext(codes.Internal, codes.ResourceExhausted)
	a := newAuthorizer(t, f, nil)
	for _, want := range []string{"Internal", "ResourceExhausted"} {
		err := a.AuthorizeNamespace(context.Background(), "dev@example.com", "orders", read)
		if !isUnavailable(err) || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want unavailable (%s)", err, want)
		}
	}
	if err := a.AuthorizeNamespace(context.Background(), "dev@example.com", "orders", read); err != nil {
		t.Fatalf("after the API recovered: %v", err)
	}
	if n := f.calls.Load(); n != 3 {
		t.Errorf("%d API calls, want 3 (failures are asked again)", n)
	}
}

func TestRejectedAPIKeyIsUnavailableNotTheUsersFault(t *testing.T) {
	f := startFakeCloud(t, user("dev@example.com", identity.AccountAccess_ROLE_OWNER, nil))
	a := newAuthorizer(t, f, func(o *cloudauth.Options) { o.APIKey = "revoked-key" })
	err := a.AuthorizeNamespace(context.Background(), "dev@example.com", "orders", read)
	if !isUnavailable(err) || !strings.Contains(err.Error(), "Unauthenticated") {
		t.Fatalf("got %v, want unavailable (Unauthenticated)", err)
	}
	if strings.Contains(err.Error(), "revoked-key") {
		t.Errorf("error %q contains the API key", err)
	}
}

func TestAPIKeyAndAPIVersionAreSentToTheAPI(t *testing.T) {
	f := startFakeCloud(t, user("dev@example.com", identity.AccountAccess_ROLE_OWNER, nil))
	a := newAuthorizer(t, f, nil)
	if err := a.AuthorizeNamespace(context.Background(), "dev@example.com", "orders", read); err != nil {
		t.Fatal(err)
	}
	md := f.lastHeaders()
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+testAPIKey {
		t.Errorf("authorization = %q, want the API key as a bearer token", got)
	}
	if got := md.Get(cloudclient.TemporalCloudAPIVersionHeader()); len(got) != 1 || got[0] != cloudclient.DefaultAPIVersion() {
		t.Errorf("%s = %q, want %q", cloudclient.TemporalCloudAPIVersionHeader(), got, cloudclient.DefaultAPIVersion())
	}
	if got := strings.Join(md.Get("user-agent"), " "); !strings.Contains(got, "kmscodec") {
		t.Errorf("user-agent %q does not name kmscodec", got)
	}
}

func TestAccessIsCachedForTTLThenAskedAgain(t *testing.T) {
	clock := newFakeClock()
	f := startFakeCloud(t, user("dev@example.com", identity.AccountAccess_ROLE_DEVELOPER, perms{
		"orders":   identity.NamespaceAccess_PERMISSION_WRITE,
		"payments": identity.NamespaceAccess_PERMISSION_READ,
	}))
	a := newAuthorizer(t, f, func(o *cloudauth.Options) { o.TTL = time.Minute; o.Clock = clock.Now })
	ctx := context.Background()
	mustAllow := func(ns string, w bool) {
		t.Helper()
		if err := a.AuthorizeNamespace(ctx, "dev@example.com", ns, w); err != nil {
			t.Fatalf("%s write=%v: %v", ns, w, err)
		}
	}
	mustAllow("orders", read)
	mustAllow("orders", write)
	mustAllow("payments", read)
	if err := a.AuthorizeNamespace(ctx, "dev@example.com", "payments", write); !errors.Is(err, cloudauth.ErrNoAccess) {
		t.Fatalf("payments write: %v, want ErrNoAccess", err)
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d API calls for four decisions about one user, want 1", n)
	}

	// An administrator revokes orders. Within the TTL the cached access
	// still applies; after it, the revocation does.
	f.setUsers(user("dev@example.com", identity.AccountAccess_ROLE_DEVELOPER, perms{"payments": identity.NamespaceAccess_PERMISSION_READ}))
	clock.Advance(59 * time.Second)
	mustAllow("orders", read)
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d API calls within the TTL, want 1", n)
	}
	clock.Advance(time.Second)
	if err := a.AuthorizeNamespace(ctx, "dev@example.com", "orders", read); !errors.Is(err, cloudauth.ErrNoAccess) {
		t.Fatalf("after the TTL: %v, want ErrNoAccess", err)
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d API calls after the TTL, want 2", n)
	}
}

func TestUnknownUserIsRememberedOnlyForUnknownUserTTL(t *testing.T) {
	clock := newFakeClock()
	f := startFakeCloud(t)
	a := newAuthorizer(t, f, func(o *cloudauth.Options) { o.Clock = clock.Now }) // defaults: 1m, 10s
	ctx := context.Background()
	for range 3 {
		if err := a.AuthorizeNamespace(ctx, "new@example.com", "orders", read); !errors.Is(err, cloudauth.ErrUnknownUser) {
			t.Fatalf("got %v, want ErrUnknownUser", err)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d API calls, want 1", n)
	}
	// The user is invited and given access; 10 seconds later it counts.
	f.setUsers(user("new@example.com", identity.AccountAccess_ROLE_DEVELOPER, perms{"orders": identity.NamespaceAccess_PERMISSION_READ}))
	clock.Advance(10 * time.Second)
	if err := a.AuthorizeNamespace(ctx, "new@example.com", "orders", read); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d API calls, want 2", n)
	}
}

func TestUnknownUserTTLNegativeAsksEveryTime(t *testing.T) {
	f := startFakeCloud(t)
	a := newAuthorizer(t, f, func(o *cloudauth.Options) { o.UnknownUserTTL = -1 })
	for range 3 {
		if err := a.AuthorizeNamespace(context.Background(), "new@example.com", "orders", read); !errors.Is(err, cloudauth.ErrUnknownUser) {
			t.Fatalf("got %v, want ErrUnknownUser", err)
		}
	}
	if n := f.calls.Load(); n != 3 {
		t.Fatalf("%d API calls, want 3", n)
	}
}

func TestCacheHoldsAtMostMaxEntriesUsers(t *testing.T) {
	f := startFakeCloud(t,
		user("a@example.com", identity.AccountAccess_ROLE_OWNER, nil),
		user("b@example.com", identity.AccountAccess_ROLE_OWNER, nil))
	a := newAuthorizer(t, f, func(o *cloudauth.Options) { o.MaxEntries = 1 })
	for _, who := range []string{"a@example.com", "b@example.com", "a@example.com"} {
		if err := a.AuthorizeNamespace(context.Background(), who, "orders", read); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.calls.Load(); n != 3 {
		t.Fatalf("%d API calls, want 3 (b evicted a)", n)
	}
}

func TestConcurrentLookupsOfOneUserShareOneCall(t *testing.T) {
	f := startFakeCloud(t, user("dev@example.com", identity.AccountAccess_ROLE_DEVELOPER, perms{"orders": identity.NamespaceAccess_PERMISSION_READ}))
	f.holdCalls()
	a := newAuthorizer(t, f, nil)
	const callers = 50
	errs := make(chan error, callers)
	var started sync.WaitGroup
	for i := range callers {
		started.Add(1)
		go func() {
			started.Done()
			ns, w := "orders", i%2 == 1 // half decode, half try to encode
			errs <- a.AuthorizeNamespace(context.Background(), "dev@example.com", ns, w)
		}()
	}
	started.Wait()
	waitFor(t, func() bool { return f.arrived() >= 1 })
	time.Sleep(100 * time.Millisecond) // let every caller reach the lookup
	f.release()
	allowed, refused := 0, 0
	for range callers {
		switch err := <-errs; {
		case err == nil:
			allowed++
		case errors.Is(err, cloudauth.ErrNoAccess):
			refused++
		default:
			t.Errorf("unexpected %v", err)
		}
	}
	if allowed != callers/2 || refused != callers/2 {
		t.Errorf("%d allowed, %d refused; want %d each", allowed, refused, callers/2)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("%d API calls for %d concurrent lookups of one user, want 1", n, callers)
	}
}

func TestInjectedClientIsUsed(t *testing.T) {
	f := startFakeCloud(t, user("dev@example.com", identity.AccountAccess_ROLE_OWNER, nil))
	c, err := cloudclient.New(cloudclient.Options{HostPort: f.addr, APIKey: testAPIKey, AllowInsecure: true, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := cloudauth.New(cloudauth.Options{Client: c.CloudService()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.AuthorizeNamespace(context.Background(), "dev@example.com", "orders", write); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("%d API calls, want 1", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
