package cloudauth

import (
	"errors"
	"fmt"
)

// ErrNoAccess means the user is a user of the Temporal Cloud account but
// may not read (or, for write, write) the namespace asked about.
var ErrNoAccess = errors.New("cloudauth: no access to the namespace")

// ErrUnknownUser means the identity names no user of the Temporal Cloud
// account, or is empty or not an email address.
var ErrUnknownUser = errors.New("cloudauth: not a user of the Temporal Cloud account")

// UnavailableError means the decision could not be made: the Cloud
// Operations API was unreachable, too slow, refused kmscodec's API key,
// or answered something unexpected. The request is refused (fail
// closed), but the fault is not the user's: a server answers 503 rather
// than 403, and the next request asks the API again.
type UnavailableError struct {
	// Err is the cause. It never holds the API key or a user's token.
	Err error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("cloudauth: Temporal Cloud Operations API unavailable: %v", e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Unavailable reports true. A server can test for it with errors.As on
// an interface{ Unavailable() bool }, without importing this package.
func (e *UnavailableError) Unavailable() bool { return true }

func unavailable(format string, args ...any) error {
	return &UnavailableError{Err: fmt.Errorf(format, args...)}
}
