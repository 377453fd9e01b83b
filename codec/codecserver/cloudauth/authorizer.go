// Package cloudauth decides whether a Temporal Cloud user may read or
// write a namespace's payloads, by asking the Temporal Cloud Operations
// API for the user's access.
//
// The Temporal Cloud Web UI can pass the signed-in user's access token
// to a codec server. The server verifies the token's signature and takes
// the user's email from it; it then calls AuthorizeNamespace, which looks
// the user up with the Cloud Operations API (GetUsers, filtered by email)
// and applies the user's account role and namespace permissions: Account
// Owners and Global Admins may read and write every namespace; otherwise
// a namespace's "read" permission allows decoding and "write" or "admin"
// also encoding. A user's access is cached for Options.TTL, and
// concurrent lookups of one user share one API call.
//
// Errors are ErrNoAccess, ErrUnknownUser (both: answer 403) or an
// *UnavailableError (answer 503): the API could not be asked, and the
// request is refused, never allowed.
package cloudauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	cloudservice "go.temporal.io/cloud-sdk/api/cloudservice/v1"
	identity "go.temporal.io/cloud-sdk/api/identity/v1"
	"go.temporal.io/cloud-sdk/cloudclient"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Authorizer answers AuthorizeNamespace from its cache or the Cloud
// Operations API. It is safe for concurrent use; Close releases its
// connection.
type Authorizer struct {
	opts   Options
	api    cloudservice.CloudServiceClient
	close  func() error
	users  *lru.Cache[string, cachedUser]
	flight singleflight.Group
}

// cachedUser is one lookup's answer: the user's access, or nil for a user
// the API does not know.
type cachedUser struct {
	access  *userAccess
	expires time.Time
}

// New checks opts and returns an Authorizer. It opens no connection yet:
// the first lookup does.
//
// The cache is a plain LRU whose entries carry their own expiry rather
// than golang-lru's expirable cache, which starts a goroutine that never
// ends; this keeps per-entry lifetimes (users and unknown users) and an
// injectable clock too.
func New(opts Options) (*Authorizer, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	users, err := lru.New[string, cachedUser](opts.MaxEntries)
	if err != nil {
		return nil, fmt.Errorf("cloudauth: %w", err)
	}
	a := &Authorizer{opts: opts, api: opts.Client, close: func() error { return nil }, users: users}
	if a.api == nil {
		c, err := cloudclient.New(cloudclient.Options{
			HostPort:      opts.Endpoint,
			APIKey:        opts.APIKey,
			AllowInsecure: opts.Insecure,
			// A lookup serves an interactive request with a deadline of
			// Timeout; a failure is not cached, so the user's next
			// request is the retry.
			DisableRetry: true,
			UserAgent:    "kmscodec",
		})
		if err != nil {
			return nil, fmt.Errorf("cloudauth: %w", err)
		}
		a.api, a.close = c.CloudService(), c.Close
	}
	// The client holds the key now; the Authorizer keeps no copy that a
	// debug print of it could show.
	a.opts.APIKey = ""
	return a, nil
}

// Close closes the connection New opened (not a Client passed in).
func (a *Authorizer) Close() error { return a.close() }

// maxIdentityLen is the longest email address (RFC 5321 path limit).
const maxIdentityLen = 320

// AuthorizeNamespace returns nil if the Temporal Cloud user whose email
// is identity may read namespace's payloads (write false: decode) or
// write them (write true: encode). Emails are compared without regard to
// case. It returns an error wrapping ErrNoAccess or ErrUnknownUser, or
// an *UnavailableError when the decision could not be made.
func (a *Authorizer) AuthorizeNamespace(ctx context.Context, identity, namespace string, write bool) error {
	switch {
	case strings.TrimSpace(identity) == "":
		return fmt.Errorf("%w: the token names no identity", ErrUnknownUser)
	case len(identity) > maxIdentityLen || !strings.Contains(identity, "@"):
		return fmt.Errorf("%w: identity %.64q is not an email address", ErrUnknownUser, identity)
	case namespace == "":
		return fmt.Errorf("%w: no namespace given", ErrNoAccess)
	}
	access, err := a.lookup(ctx, identity)
	if err != nil {
		return err
	}
	if access == nil {
		return fmt.Errorf("%w: %s", ErrUnknownUser, identity)
	}
	if !access.allows(namespace, write) {
		verb := "read"
		if write {
			verb = "write"
		}
		if access.inactive != "" {
			return fmt.Errorf("%w: user %s is %s", ErrNoAccess, identity, access.inactive)
		}
		return fmt.Errorf("%w: user %s may not %s namespace %q", ErrNoAccess, identity, verb, namespace)
	}
	return nil
}

// lookup returns the access of the user with email identity (nil if the
// API knows no such user), from the cache or from one API call shared by
// all concurrent callers. A caller whose ctx ends stops waiting; the call
// itself runs on to its own Timeout, for the others.
func (a *Authorizer) lookup(ctx context.Context, identity string) (*userAccess, error) {
	key := strings.ToLower(identity)
	if u, ok := a.cached(key); ok {
		return u.access, nil
	}
	ch := a.flight.DoChan(key, func() (any, error) {
		if u, ok := a.cached(key); ok { // filled by a flight that just ended
			return u, nil
		}
		callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.opts.Timeout)
		defer cancel()
		access, err := a.fetch(callCtx, identity)
		if err != nil {
			return nil, err
		}
		u := cachedUser{access: access, expires: a.opts.Clock().Add(a.opts.TTL)}
		if access == nil {
			if a.opts.UnknownUserTTL < 0 {
				return u, nil
			}
			u.expires = a.opts.Clock().Add(a.opts.UnknownUserTTL)
		}
		a.users.Add(key, u)
		return u, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(cachedUser).access, nil
	case <-ctx.Done():
		return nil, &UnavailableError{Err: fmt.Errorf("waiting for the user lookup: %w", ctx.Err())}
	}
}

func (a *Authorizer) cached(key string) (cachedUser, bool) {
	u, ok := a.users.Get(key)
	if !ok || !a.opts.Clock().Before(u.expires) {
		return cachedUser{}, false
	}
	return u, true
}

// maxPages bounds the pages read for one email. The API filters by
// email, so one page is the rule; more means it ignored the filter.
const maxPages = 10

// fetch asks the API for the user with email identity, reading every
// page of the answer.
func (a *Authorizer) fetch(ctx context.Context, email string) (*userAccess, error) {
	var found *identity.User
	req := &cloudservice.GetUsersRequest{Email: email}
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, unavailable("GetUsers for one email returned more than %d pages", maxPages)
		}
		resp, err := a.api.GetUsers(ctx, req)
		if err != nil {
			return nil, apiError(ctx, err)
		}
		for _, u := range resp.GetUsers() {
			if !strings.EqualFold(u.GetSpec().GetEmail(), email) {
				continue
			}
			if found != nil {
				return nil, unavailable("GetUsers returned two users with email %s (ids %s and %s)", email, found.GetId(), u.GetId())
			}
			found = u
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if found == nil {
		return nil, nil
	}
	return accessOf(found), nil
}

// apiError wraps a failed API call. Only the gRPC code and message are
// kept: neither carries our API key.
func apiError(ctx context.Context, err error) error {
	s := status.Convert(err)
	// The deadline travels with the call, so the API may report it
	// before our own context notices.
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || s.Code() == codes.DeadlineExceeded {
		return &UnavailableError{Err: fmt.Errorf("GetUsers timed out: %w", context.DeadlineExceeded)}
	}
	return unavailable("GetUsers: %s: %s", s.Code(), s.Message())
}
