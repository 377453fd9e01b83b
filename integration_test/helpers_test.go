package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// newCodec builds a codec with its own KMS client, as a separate process
// would have, and fails the test on error.
func newCodec(t testing.TB, k *harness.KMS, opts codec.Options) *codec.Codec {
	t.Helper()
	if opts.KMS == nil {
		opts.KMS = k.NewClient()
	}
	c, err := codec.New(opts)
	if err != nil {
		t.Fatalf("codec.New: %v", err)
	}
	return c
}

// codecClientOptions are client options that encrypt with c, the way a
// user configures both clients and workers.
func codecClientOptions(namespace string, c *codec.Codec) client.Options {
	dc := codec.NewDataConverter(c, codec.DataConverterOptions{})
	return client.Options{
		Namespace:        namespace,
		DataConverter:    dc,
		FailureConverter: codec.NewFailureConverter(dc),
	}
}

// dialCodec connects a client that encrypts with c.
func dialCodec(t testing.TB, namespace string, c *codec.Codec) client.Client {
	t.Helper()
	return server.MustDial(t, codecClientOptions(namespace, c))
}

// dialRaw connects a client without any codec: it sees payloads exactly as
// the Temporal server stores them.
func dialRaw(t testing.TB, namespace string) client.Client {
	t.Helper()
	return server.MustDial(t, client.Options{Namespace: namespace})
}

// startWorker starts a worker on c and stops it when the test ends (Stop
// may also be called earlier; it is idempotent).
func startWorker(t testing.TB, c client.Client, taskQueue string, opts worker.Options, register func(worker.Registry)) worker.Worker {
	t.Helper()
	w := worker.New(c, taskQueue, opts)
	register(w)
	if err := w.Start(); err != nil {
		t.Fatalf("start worker on %s: %v", taskQueue, err)
	}
	t.Cleanup(w.Stop)
	return w
}

// uniqueName returns prefix plus random hex, for task queues, workflow
// IDs, aliases and secrets that must not collide across tests or runs.
func uniqueName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// testContext is a context that ends with the test or after d.
func testContext(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond every 100ms until it returns nil or d passes, and
// then fails the test with cond's last error.
func eventually(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rawHistory reads a workflow's whole history as the server stores it.
func rawHistory(t testing.TB, c client.Client, workflowID, runID string) *historypb.History {
	t.Helper()
	ctx := testContext(t, time.Minute)
	it := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatalf("read history of %s: %v", workflowID, err)
		}
		h.Events = append(h.Events, e)
	}
	return h
}

// foundPayload is a Payload found somewhere inside a proto message.
type foundPayload struct {
	// Path names the field, e.g.
	// "activity_task_completed_event_attributes.result.payloads[0]".
	Path string
	// Source says where m came from: the history event type, or a name
	// such as "memo" for payloads read from elsewhere.
	Source string
	// Event is the history event type the payload is in, if any.
	Event   enumspb.EventType
	Payload *commonpb.Payload
}

var (
	payloadName          = (&commonpb.Payload{}).ProtoReflect().Descriptor().FullName()
	failureName          = (&failurepb.Failure{}).ProtoReflect().Descriptor().FullName()
	searchAttributesName = (&commonpb.SearchAttributes{}).ProtoReflect().Descriptor().FullName()
)

// walkProto calls visit for m and every message nested in it, at any depth,
// through singular, repeated and map fields, with a path of field names.
// Walking the descriptors rather than naming fields means a payload in a
// field added by a newer API version is not missed.
func walkProto(m protoreflect.Message, path string, visit func(path string, m protoreflect.Message) (descend bool)) {
	if !visit(path, m) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := string(fd.Name())
		if path != "" {
			name = path + "." + name
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				return true
			}
			type entry struct {
				key string
				msg protoreflect.Message
			}
			var entries []entry
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				entries = append(entries, entry{k.String(), mv.Message()})
				return true
			})
			// Sorted so that paths in messages are stable.
			slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.key, b.key) })
			for _, e := range entries {
				walkProto(e.msg, fmt.Sprintf("%s[%s]", name, e.key), visit)
			}
		case fd.IsList():
			if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
				return true
			}
			for i := 0; i < v.List().Len(); i++ {
				walkProto(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", name, i), visit)
			}
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			walkProto(v.Message(), name, visit)
		}
		return true
	})
}

// findPayloads returns every Payload inside m except search attributes,
// which Temporal must be able to index and so are never encoded by a
// codec.
func findPayloads(m proto.Message, source string) []foundPayload {
	var out []foundPayload
	walkProto(m.ProtoReflect(), "", func(path string, m protoreflect.Message) bool {
		switch m.Descriptor().FullName() {
		case searchAttributesName:
			return false
		case payloadName:
			out = append(out, foundPayload{Path: path, Source: source, Payload: m.Interface().(*commonpb.Payload)})
			return false
		}
		return true
	})
	return out
}

// historyPayloads returns every payload in h, each tagged with its event.
func historyPayloads(h *historypb.History) []foundPayload {
	var out []foundPayload
	for _, e := range h.GetEvents() {
		for _, f := range findPayloads(e, e.GetEventType().String()) {
			f.Event = e.GetEventType()
			out = append(out, f)
		}
	}
	return out
}

// findFailures returns every Failure inside m, causes included.
func findFailures(m proto.Message) []*failurepb.Failure {
	var out []*failurepb.Failure
	walkProto(m.ProtoReflect(), "", func(_ string, m protoreflect.Message) bool {
		if m.Descriptor().FullName() == failureName {
			out = append(out, m.Interface().(*failurepb.Failure))
		}
		return true
	})
	return out
}

// notEncrypted says why p is not a kms-envelope-v1 payload, or "" if it
// is. It names metadata fields only and never prints payload data.
func notEncrypted(p *commonpb.Payload) string {
	md := p.GetMetadata()
	if enc := string(md[envelope.MetadataEncoding]); enc != envelope.EncodingEncrypted {
		return fmt.Sprintf("encoding %q", enc)
	}
	if f := string(md[envelope.MetadataFormat]); f != envelope.Format {
		return fmt.Sprintf("encryption-format %q", f)
	}
	if _, err := envelope.Parse(p); err != nil {
		return "envelope.Parse: " + err.Error()
	}
	return ""
}

// requireAllEncrypted fails the test for each payload that is not a
// kms-envelope-v1 payload, naming where it is.
func requireAllEncrypted(t testing.TB, found []foundPayload) {
	t.Helper()
	if len(found) == 0 {
		t.Fatal("no payloads found; the walk or the setup is broken")
	}
	for _, f := range found {
		if why := notEncrypted(f.Payload); why != "" {
			t.Errorf("payload not encrypted (%s) at %s %s", why, f.Source, f.Path)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// keyARNOf returns the master key ARN a payload names.
func keyARNOf(t testing.TB, p *commonpb.Payload) string {
	t.Helper()
	env, err := envelope.Parse(p)
	if err != nil {
		t.Fatalf("envelope.Parse: %v", err)
	}
	return env.KeyARN
}

// contextOf returns the KMS encryption context a payload records.
func contextOf(t testing.TB, p *commonpb.Payload) map[string]string {
	t.Helper()
	env, err := envelope.Parse(p)
	if err != nil {
		t.Fatalf("envelope.Parse: %v", err)
	}
	ctx, err := env.EncryptionContext()
	if err != nil {
		t.Fatalf("EncryptionContext: %v", err)
	}
	// The metadata field must be the same context as compact JSON, so that
	// anyone can read it back without this library.
	var fromJSON map[string]string
	if raw := p.GetMetadata()[envelope.MetadataContext]; len(raw) > 0 {
		if err := json.Unmarshal(raw, &fromJSON); err != nil {
			t.Fatalf("encryption-context metadata is not a JSON object: %v", err)
		}
	}
	if len(fromJSON) != len(ctx) {
		t.Fatalf("encryption-context metadata has %d entries, Envelope.EncryptionContext %d", len(fromJSON), len(ctx))
	}
	for k, v := range ctx {
		if fromJSON[k] != v {
			t.Fatalf("encryption-context metadata differs from Envelope.EncryptionContext at %q", k)
		}
	}
	return ctx
}

// sources returns the distinct sources of payloads, sorted, for messages.
func sources(found []foundPayload) []string {
	seen := map[string]bool{}
	for _, f := range found {
		seen[f.Source] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// parallel runs fn(i) for i in [0,n) on the given number of goroutines
// and returns the first error.
func parallel(n, goroutines int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// containsAny reports whether s contains any of subs.
func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
