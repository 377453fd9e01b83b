package harness

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fault is what a FaultProxy does with a KMS request instead of passing
// it on.
type Fault int

// The faults a FaultProxy injects. Each is something AWS KMS, or the
// network in front of it, does in real life.
const (
	// Pass forwards the request to the KMS behind the proxy.
	Pass Fault = iota
	// Throttle answers 400 ThrottlingException, as KMS does above a
	// request quota.
	Throttle
	// InternalError answers 500 KMSInternalException.
	InternalError
	// Unavailable answers 503 ServiceUnavailable, as an AWS endpoint
	// does while it sheds load.
	Unavailable
	// Slow holds the request for FaultProxy.SlowDelay before forwarding
	// it, or until the client gives up, whichever comes first.
	Slow
	// Drop closes the connection without answering.
	Drop
	numFaults
)

// Faults lists every fault other than Pass.
var Faults = []Fault{Throttle, InternalError, Unavailable, Slow, Drop}

func (f Fault) String() string {
	switch f {
	case Pass:
		return "pass"
	case Throttle:
		return "throttle"
	case InternalError:
		return "500 KMSInternalException"
	case Unavailable:
		return "503 ServiceUnavailable"
	case Slow:
		return "slow"
	case Drop:
		return "dropped connection"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// errorAnswers are the HTTP answers of the faults that answer, in the AWS
// JSON 1.1 protocol the SDK parses.
var errorAnswers = map[Fault]struct {
	status int
	body   string
}{
	Throttle:      {http.StatusBadRequest, `{"__type":"ThrottlingException","message":"Rate exceeded (injected by the test's fault proxy)"}`},
	InternalError: {http.StatusInternalServerError, `{"__type":"KMSInternalException","message":"internal error (injected by the test's fault proxy)"}`},
	Unavailable:   {http.StatusServiceUnavailable, `{"__type":"ServiceUnavailable","message":"service unavailable (injected by the test's fault proxy)"}`},
}

// MaxFaultWindow bounds how long one FaultRule is in force, so that a
// test that forgets to clear a fault cannot hang a run.
const MaxFaultWindow = 2 * time.Minute

// FaultRule says which requests a FaultProxy fails, and how.
type FaultRule struct {
	// Fault is what the proxy does with the requests the rule matches.
	Fault Fault
	// Ops limits the rule to these KMS operations (harness.OpDecrypt...),
	// by the X-Amz-Target header. Empty: every operation.
	Ops []string
	// Count is how many requests get the fault, at most; then the rule
	// ends. 0: no limit but For.
	Count int
	// For is how long the rule is in force. 0 or more than
	// MaxFaultWindow: MaxFaultWindow.
	For time.Duration
}

// FaultProxy is an HTTP reverse proxy in front of a KMS endpoint that
// fails requests on command. A test points KMS clients at URL, lets
// requests pass, and injects a fault for a bounded number of requests or
// a bounded time. It counts what it injected and what it forwarded.
type FaultProxy struct {
	// URL is the proxy's endpoint, http://127.0.0.1:PORT.
	URL string
	// SlowDelay is how long the Slow fault holds a request. Default 30s;
	// set it before injecting Slow.
	SlowDelay time.Duration

	server    *httptest.Server
	proxy     *httputil.ReverseProxy
	transport *http.Transport
	closing   chan struct{}
	closeOnce sync.Once

	mu        sync.Mutex
	rule      *activeRule
	injected  map[Fault]map[string]int64 // by fault, then operation
	forwarded map[string]int64           // by operation
	abandoned int64                      // Slow requests the client gave up on
}

// activeRule is a FaultRule in force.
type activeRule struct {
	FaultRule
	left  int // requests still to fail, when Count > 0
	timer *time.Timer
	done  chan struct{}
}

// StartFaultProxy starts a proxy to target (such as KMS.URL) that passes
// every request until told otherwise, and stops it when the test ends.
func StartFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	p, err := NewFaultProxy(target)
	if err != nil {
		t.Fatalf("start KMS fault proxy: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// NewFaultProxy starts a proxy to target on 127.0.0.1 with a port chosen
// at run time. Call Close to stop it.
func NewFaultProxy(target string) (*FaultProxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("fault proxy target %q is not a URL", target)
	}
	p := &FaultProxy{
		SlowDelay: 30 * time.Second,
		closing:   make(chan struct{}),
		injected:  map[Fault]map[string]int64{},
		forwarded: map[string]int64{},
		transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
	}
	p.proxy = &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(u) },
		Transport: p.transport,
		// A client that gave up (a Slow request past its timeout) is not
		// an error worth a log line.
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return
			}
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, `{"__type":"InternalFailure","message":"fault proxy could not reach KMS"}`)
		},
	}
	p.server = httptest.NewServer(http.HandlerFunc(p.serveHTTP))
	p.URL = p.server.URL
	return p, nil
}

// Close ends every held request and stops the proxy.
func (p *FaultProxy) Close() {
	p.closeOnce.Do(func() {
		p.Clear()
		close(p.closing)
		p.server.Close()
		p.transport.CloseIdleConnections()
	})
}

// Inject puts rule in force in place of any rule before it, and returns a
// channel that is closed when the rule ends: after Count faults, after
// For, or when it is replaced or cleared.
func (p *FaultProxy) Inject(rule FaultRule) <-chan struct{} {
	if rule.For <= 0 || rule.For > MaxFaultWindow {
		rule.For = MaxFaultWindow
	}
	r := &activeRule{FaultRule: rule, left: rule.Count, done: make(chan struct{})}
	r.Ops = slices.Clone(rule.Ops)
	p.mu.Lock()
	p.endLocked()
	p.rule = r
	r.timer = time.AfterFunc(rule.For, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.rule == r {
			p.endLocked()
		}
	})
	p.mu.Unlock()
	if rule.Fault == Pass {
		p.Clear()
	}
	return r.done
}

// Clear ends the rule in force, if any: every request passes again.
func (p *FaultProxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endLocked()
}

func (p *FaultProxy) endLocked() {
	if p.rule == nil {
		return
	}
	p.rule.timer.Stop()
	close(p.rule.done)
	p.rule = nil
}

// decide returns what to do with a request for op, and counts it.
func (p *FaultProxy) decide(op string) Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rule
	if r == nil || (len(r.Ops) > 0 && !slices.Contains(r.Ops, op)) {
		p.forwarded[op]++
		return Pass
	}
	if p.injected[r.Fault] == nil {
		p.injected[r.Fault] = map[string]int64{}
	}
	p.injected[r.Fault][op]++
	if r.Count > 0 {
		r.left--
		if r.left == 0 {
			p.endLocked()
		}
	}
	return r.Fault
}

func (p *FaultProxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	op := operation(r)
	fault := p.decide(op)
	switch fault {
	case Pass:
		p.proxy.ServeHTTP(w, r)
	case Slow:
		// The server notices a client that hangs up only once the
		// request body has been read, so read it now and forward a copy.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		timer := time.NewTimer(p.SlowDelay)
		defer timer.Stop()
		select {
		case <-timer.C:
			p.mu.Lock()
			p.forwarded[op]++
			p.mu.Unlock()
			p.proxy.ServeHTTP(w, r)
		case <-r.Context().Done():
			p.mu.Lock()
			p.abandoned++
			p.mu.Unlock()
		case <-p.closing:
		}
	case Drop:
		// Read the request first, as a server that dies mid-request
		// would have, then close without a byte of answer.
		_, _ = io.Copy(io.Discard, r.Body)
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic("fault proxy: the connection cannot be hijacked")
		}
		conn, _, err := hj.Hijack()
		if err == nil {
			conn.Close()
		}
	default:
		a := errorAnswers[fault]
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}
}

// Injected returns how many requests got fault f, for every operation.
func (p *FaultProxy) Injected(f Fault) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for _, c := range p.injected[f] {
		n += c
	}
	return n
}

// InjectedTotal returns how many requests got any fault.
func (p *FaultProxy) InjectedTotal() int64 {
	var n int64
	for f := Pass + 1; f < numFaults; f++ {
		n += p.Injected(f)
	}
	return n
}

// Forwarded returns how many requests for op the proxy passed on to KMS;
// op "" counts every operation.
func (p *FaultProxy) Forwarded(op string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if op != "" {
		return p.forwarded[op]
	}
	var n int64
	for _, c := range p.forwarded {
		n += c
	}
	return n
}

// Abandoned returns how many Slow requests the client gave up on before
// SlowDelay passed.
func (p *FaultProxy) Abandoned() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.abandoned
}

// String formats the counts, such as
// "forwarded Decrypt=3 GenerateDataKey=5; throttle Decrypt=2", for logs.
func (p *FaultProxy) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	format := func(counts map[string]int64) string {
		ops := make([]string, 0, len(counts))
		for op := range counts {
			ops = append(ops, op)
		}
		sort.Strings(ops)
		parts := make([]string, len(ops))
		for i, op := range ops {
			parts[i] = fmt.Sprintf("%s=%d", op, counts[op])
		}
		return strings.Join(parts, " ")
	}
	parts := []string{"forwarded " + format(p.forwarded)}
	for f := Pass + 1; f < numFaults; f++ {
		if len(p.injected[f]) > 0 {
			parts = append(parts, f.String()+" "+format(p.injected[f]))
		}
	}
	if p.abandoned > 0 {
		parts = append(parts, fmt.Sprintf("slow requests abandoned by the client=%d", p.abandoned))
	}
	return strings.Join(parts, "; ")
}
