package cloudauth_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudservice "go.temporal.io/cloud-sdk/api/cloudservice/v1"
	identity "go.temporal.io/cloud-sdk/api/identity/v1"
	resource "go.temporal.io/cloud-sdk/api/resource/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/temporal-kms/kmscodec/codec/codecserver/cloudauth"
)

// testAPIKey is the API key the fake accepts.
const testAPIKey = "test-api-key-0123456789"

// fakeCloud is a Cloud Operations API serving GetUsers from a list of
// users, over real gRPC on a loopback port. Like the real API it
// refuses a call without the right API key, and filters by email; it
// counts the calls it answers.
type fakeCloud struct {
	cloudservice.UnimplementedCloudServiceServer

	addr string

	mu       sync.Mutex
	users    []*identity.User
	pageSize int // users per page; 0 means all in one
	// ignoreEmailFilter lists every user, whatever email is asked for.
	ignoreEmailFilter bool
	hold              chan struct{} // if set, GetUsers waits for it to close
	failures          []codes.Code  // answered to the next calls, in order
	headers           []metadata.MD // the metadata of every call
	requests          []*cloudservice.GetUsersRequest

	calls atomic.Int32
}

// startFakeCloud serves a fakeCloud on 127.0.0.1 until the test ends.
func startFakeCloud(t *testing.T, users ...*identity.User) *fakeCloud {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCloud{addr: lis.Addr().String(), users: users}
	srv := grpc.NewServer()
	cloudservice.RegisterCloudServiceServer(srv, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		f.release()
		srv.Stop()
		<-done
	})
	return f
}

func (f *fakeCloud) GetUsers(ctx context.Context, req *cloudservice.GetUsersRequest) (*cloudservice.GetUsersResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.headers = append(f.headers, md)
	f.requests = append(f.requests, proto.Clone(req).(*cloudservice.GetUsersRequest))
	hold := f.hold
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	f.calls.Add(1)
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+testAPIKey {
		return nil, status.Error(codes.Unauthenticated, "invalid API key")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.failures) > 0 {
		code := f.failures[0]
		f.failures = f.failures[1:]
		return nil, status.Error(code, "injected failure")
	}
	return f.page(req)
}

// page answers req from f.users; f.mu is held.
func (f *fakeCloud) page(req *cloudservice.GetUsersRequest) (*cloudservice.GetUsersResponse, error) {
	var matching []*identity.User
	for _, u := range f.users {
		if req.GetEmail() == "" || f.ignoreEmailFilter || strings.EqualFold(u.GetSpec().GetEmail(), req.GetEmail()) {
			matching = append(matching, u)
		}
	}
	size := f.pageSize
	if size == 0 {
		size = len(matching) + 1
	}
	start := 0
	if req.GetPageToken() != "" {
		var ok bool
		if start, ok = parsePageToken(req.GetPageToken()); !ok || start > len(matching) {
			return nil, status.Error(codes.InvalidArgument, "bad page token")
		}
	}
	end := min(start+size, len(matching))
	resp := &cloudservice.GetUsersResponse{}
	for _, u := range matching[start:end] {
		resp.Users = append(resp.Users, proto.Clone(u).(*identity.User))
	}
	if end < len(matching) {
		resp.NextPageToken = pageToken(end)
	}
	return resp, nil
}

func pageToken(start int) string { return "from-" + string(rune('a'+start)) }

func parsePageToken(tok string) (int, bool) {
	s, ok := strings.CutPrefix(tok, "from-")
	if !ok || len(s) != 1 {
		return 0, false
	}
	return int(s[0] - 'a'), true
}

// holdCalls makes GetUsers wait until release.
func (f *fakeCloud) holdCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold = make(chan struct{})
}

func (f *fakeCloud) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hold != nil {
		close(f.hold)
		f.hold = nil
	}
}

// arrived is how many GetUsers calls have reached the fake, answered or
// still held.
func (f *fakeCloud) arrived() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.headers)
}

func (f *fakeCloud) failNext(codes ...codes.Code) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, codes...)
}

// setUsers replaces the account's users, as an administrator changing
// access in Temporal Cloud would.
func (f *fakeCloud) setUsers(users ...*identity.User) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users = users
}

func (f *fakeCloud) lastHeaders() metadata.MD {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.headers) == 0 {
		return nil
	}
	return f.headers[len(f.headers)-1]
}

func (f *fakeCloud) lastRequest() *cloudservice.GetUsersRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return nil
	}
	return f.requests[len(f.requests)-1]
}

// user builds an active user with an account role and namespace
// permissions.
func user(email string, role identity.AccountAccess_Role, namespaces map[string]identity.NamespaceAccess_Permission) *identity.User {
	access := &identity.Access{
		AccountAccess:     &identity.AccountAccess{Role: role},
		NamespaceAccesses: map[string]*identity.NamespaceAccess{},
	}
	for ns, p := range namespaces {
		access.NamespaceAccesses[ns] = &identity.NamespaceAccess{Permission: p}
	}
	return &identity.User{
		Id:    "id-" + email,
		Spec:  &identity.UserSpec{Email: email, Access: access},
		State: resource.ResourceState_RESOURCE_STATE_ACTIVE,
	}
}

// fakeClock is a settable clock for the cache's expiry.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newAuthorizer connects an Authorizer to f over loopback gRPC with the
// right API key, after applying edit to its options.
func newAuthorizer(t *testing.T, f *fakeCloud, edit func(*cloudauth.Options)) *cloudauth.Authorizer {
	t.Helper()
	opts := cloudauth.Options{Endpoint: f.addr, APIKey: testAPIKey, Insecure: true}
	if edit != nil {
		edit(&opts)
	}
	a, err := cloudauth.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}
