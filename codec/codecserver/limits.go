package codecserver

import (
	"math"
	"net/http"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// semaphore bounds concurrent work: acquire fails at once when full,
// rather than queueing.
type semaphore chan struct{}

func (s semaphore) tryAcquire() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s semaphore) release() { <-s }

func busy(what string) *apiError {
	e := errorf(http.StatusServiceUnavailable, codeBusy, "too many %s in flight; retry shortly", what)
	e.retryAfter = 1
	return e
}

// callerLimits holds a token bucket of KMS calls per caller. Callers
// seen least recently are forgotten beyond maxCallers, which only gives
// them a full bucket again.
type callerLimits struct {
	rate  rate.Limit
	burst int

	mu       sync.Mutex // makes get-or-add atomic
	limiters *lru.Cache[string, *rate.Limiter]
}

func newCallerLimits(perSecond float64, burst, maxCallers int) (*callerLimits, error) {
	c, err := lru.New[string, *rate.Limiter](maxCallers)
	if err != nil {
		return nil, err
	}
	return &callerLimits{rate: rate.Limit(perSecond), burst: burst, limiters: c}, nil
}

// take spends n KMS calls from caller's bucket, or returns a 429 that
// says when the bucket will hold them.
func (c *callerLimits) take(caller string, n int) *apiError {
	if n == 0 {
		return nil
	}
	c.mu.Lock()
	lim, ok := c.limiters.Get(caller)
	if !ok {
		lim = rate.NewLimiter(c.rate, c.burst)
		c.limiters.Add(caller, lim)
	}
	c.mu.Unlock()
	now := time.Now()
	r := lim.ReserveN(now, n)
	if !r.OK() {
		// n is over the burst; New checks the per-request limit is not.
		return errorf(http.StatusTooManyRequests, codeRateLimited, "the request needs %d KMS calls, more than this server allows a caller at once", n)
	}
	if delay := r.DelayFrom(now); delay > 0 {
		r.CancelAt(now)
		e := errorf(http.StatusTooManyRequests, codeRateLimited, "this caller has used its KMS calls for now (the request needs %d); retry later", n)
		e.retryAfter = int(math.Ceil(delay.Seconds()))
		return e
	}
	return nil
}
