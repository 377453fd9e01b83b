package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/proxy"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/kms"
)

// keysFlags are the flags of kmscodec keys.
type keysFlags struct {
	format        string
	maxInputBytes int64

	address       string
	namespace     string
	query         string
	tls           bool
	tlsCAPath     string
	tlsCertPath   string
	tlsKeyPath    string
	tlsServerName string
}

// apiKeyEnv holds a Temporal API key; like the static token it has no
// flag, to keep it out of the process list.
const apiKeyEnv = "TEMPORAL_API_KEY"

func (a *app) keysCommand() *cobra.Command {
	f := &keysFlags{}
	cmd := &cobra.Command{
		Use:   "keys [FILE...]",
		Short: "List the KMS keys that payloads were encrypted under",
		Long: `List the KMS master keys that encrypted payloads name, with how many
payloads and distinct data keys each has, so that you know when a key
rotated away from can be disabled: when no history still in retention
names it. The replicas of a multi-Region key (key ID "mrk-...") in
several regions are listed as one key, with the regions their payloads
name: they share key material, and allowing one allows all.

With FILE arguments, read histories ('temporal workflow show -o json') or
any JSON holding payloads; "-" is standard input. With --namespace, scan
the history of every workflow in that namespace (or those matching
--query) on the Temporal service at --address.

Only payload metadata is read: this needs no KMS access at all.`,
		Example: `  kmscodec keys history.json
  kmscodec keys --address temporal.example.com:7233 --namespace orders --tls
  kmscodec keys --namespace orders --query 'CloseTime > "2025-01-01T00:00:00Z"' -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.applyEnv(cmd); err != nil {
				return err
			}
			return a.runKeys(cmd, f, args)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.format, "output", "o", "text", "output format: text or json")
	fs.Int64Var(&f.maxInputBytes, "max-input-bytes", 1<<30, "largest input file accepted")
	fs.StringVar(&f.address, "address", "localhost:7233", "Temporal frontend address, host:port")
	fs.StringVarP(&f.namespace, "namespace", "n", "", "Temporal namespace to scan")
	fs.StringVarP(&f.query, "query", "q", "", "visibility query selecting the workflows to scan (default: all)")
	fs.BoolVar(&f.tls, "tls", false, "connect with TLS (implied by the other --tls-* flags and $"+apiKeyEnv+")")
	fs.StringVar(&f.tlsCAPath, "tls-ca-path", "", "CA certificates (PEM) to verify the server with, instead of the system's")
	fs.StringVar(&f.tlsCertPath, "tls-cert-path", "", "client certificate (PEM) for mTLS")
	fs.StringVar(&f.tlsKeyPath, "tls-key-path", "", "client private key (PEM) for mTLS")
	fs.StringVar(&f.tlsServerName, "tls-server-name", "", "server name to verify, if not the address's host")
	bindEnv(fs, map[string][]string{
		"address":   {"TEMPORAL_ADDRESS"},
		"namespace": {"TEMPORAL_NAMESPACE"},
	})
	return cmd
}

func (a *app) runKeys(cmd *cobra.Command, f *keysFlags, args []string) error {
	if f.format != "text" && f.format != "json" {
		return usagef(cmd, "--output %q: use text or json", f.format)
	}
	fromServer := flagGiven(cmd, "namespace")
	switch {
	case len(args) > 0 && fromServer:
		return usagef(cmd, "give history files or --namespace, not both")
	case len(args) == 0 && !fromServer:
		return usagef(cmd, "give history files to read (\"-\" for standard input), or --namespace to scan a Temporal namespace")
	case f.maxInputBytes <= 0:
		return usagef(cmd, "--max-input-bytes must be positive")
	}

	inv := newInventory()
	if fromServer {
		if err := a.scanNamespace(cmd, f, inv); err != nil {
			return err
		}
	} else {
		for _, name := range args {
			doc, err := a.readDocument([]string{name}, f.maxInputBytes)
			if err != nil {
				return err
			}
			h := inv.beginHistory()
			for _, site := range findPayloads(doc) {
				p, err := site.toPayload()
				if err != nil {
					inv.malformed++
					continue
				}
				h.add(p, parseEventTime(site.eventTime))
			}
		}
	}
	if f.format == "json" {
		return inv.writeJSON(a.stdout)
	}
	return inv.writeText(a.stdout)
}

func parseEventTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// scanNamespace adds the history of every matching workflow in the
// namespace to inv.
func (a *app) scanNamespace(cmd *cobra.Command, f *keysFlags, inv *inventory) error {
	opts, err := f.clientOptions(a.lookupEnv)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	ctx := cmd.Context()
	// The SDK logs at INFO to standard output by default, which would
	// mix with the inventory; only its warnings are of interest here.
	opts.Logger = sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return fmt.Errorf("connecting to Temporal at %s: %w", f.address, err)
	}
	defer c.Close()

	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace:     f.namespace,
			PageSize:      1000,
			NextPageToken: token,
			Query:         f.query,
		})
		if err != nil {
			return fmt.Errorf("listing workflows in %s: %w", f.namespace, err)
		}
		for _, wf := range resp.GetExecutions() {
			exec := wf.GetExecution()
			if err := scanHistory(ctx, c, exec.GetWorkflowId(), exec.GetRunId(), inv); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				// A workflow deleted by retention between listing and
				// reading, or one this identity may not read, is no
				// reason to give up on the rest.
				inv.skipped++
				fmt.Fprintf(a.stderr, "kmscodec: skipping workflow %s run %s: %v\n", exec.GetWorkflowId(), exec.GetRunId(), err)
			}
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return nil
		}
	}
}

func scanHistory(ctx context.Context, c client.Client, workflowID, runID string, inv *inventory) error {
	iter := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := inv.beginHistory()
	for iter.HasNext() {
		event, err := iter.Next()
		if err != nil {
			return err
		}
		at := event.GetEventTime().AsTime()
		// VisitPayloads knows every payload field of every event type,
		// nested ones included.
		err = proxy.VisitPayloads(ctx, event, proxy.VisitPayloadsOptions{
			Visitor: func(_ *proxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
				for _, p := range ps {
					h.add(p, at)
				}
				return ps, nil
			},
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// clientOptions are the Temporal client's options from the flags.
func (f *keysFlags) clientOptions(lookupEnv func(string) (string, bool)) (client.Options, error) {
	opts := client.Options{HostPort: f.address, Namespace: f.namespace}
	if apiKey, _ := lookupEnv(apiKeyEnv); apiKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(apiKey)
	}
	useTLS := f.tls || f.tlsCAPath != "" || f.tlsCertPath != "" || f.tlsKeyPath != "" || f.tlsServerName != "" || opts.Credentials != nil
	if !useTLS {
		return opts, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.tlsServerName}
	if f.tlsCAPath != "" {
		pem, err := os.ReadFile(f.tlsCAPath)
		if err != nil {
			return opts, fmt.Errorf("--tls-ca-path: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return opts, fmt.Errorf("--tls-ca-path %s holds no PEM certificate", f.tlsCAPath)
		}
		cfg.RootCAs = pool
	}
	if (f.tlsCertPath == "") != (f.tlsKeyPath == "") {
		return opts, errors.New("--tls-cert-path and --tls-key-path go together")
	}
	if f.tlsCertPath != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCertPath, f.tlsKeyPath)
		if err != nil {
			return opts, fmt.Errorf("loading the client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	opts.ConnectionOptions.TLS = cfg
	return opts, nil
}

// inventory counts payloads by the master key they name.
type inventory struct {
	keys        map[string]*keyUsage
	histories   int
	skipped     int
	unencrypted int
	unsupported int
	malformed   int
}

// keyUsage is what the inventory knows of one master key. The replicas
// of a multi-Region key in several regions are one key: they share key
// material, and a codec allowing one allows all.
type keyUsage struct {
	arn        string          // the first of arns in order
	arns       map[string]bool // the ARNs payloads record, several for replicas
	payloads   int
	dataKeys   map[[sha256.Size]byte]bool // by hash of the wrapped key
	histories  int
	namespaces map[string]bool
	lastSeen   time.Time
}

func newInventory() *inventory {
	return &inventory{keys: map[string]*keyUsage{}}
}

// historyScan adds the payloads of one history (one file, or one
// workflow run) to an inventory.
type historyScan struct {
	inv  *inventory
	seen map[string]bool // keys already counted for this history
}

func (inv *inventory) beginHistory() *historyScan {
	inv.histories++
	return &historyScan{inv: inv, seen: map[string]bool{}}
}

// add counts one payload, written at the time given (zero if unknown).
// It reads metadata only; nothing is decrypted.
func (h *historyScan) add(p *commonpb.Payload, at time.Time) {
	inv := h.inv
	env, err := envelope.Parse(p)
	switch {
	case errors.Is(err, envelope.ErrNotEncrypted):
		inv.unencrypted++
		return
	case errors.Is(err, envelope.ErrUnsupportedFormat):
		inv.unsupported++
		return
	case err != nil:
		inv.malformed++
		return
	}
	group := keyGroup(env.KeyARN)
	k := inv.keys[group]
	if k == nil {
		k = &keyUsage{arn: env.KeyARN, arns: map[string]bool{}, dataKeys: map[[sha256.Size]byte]bool{}, namespaces: map[string]bool{}}
		inv.keys[group] = k
	}
	k.arns[env.KeyARN] = true
	if env.KeyARN < k.arn {
		k.arn = env.KeyARN
	}
	k.payloads++
	k.dataKeys[sha256.Sum256(env.WrappedKey)] = true
	if !h.seen[group] {
		h.seen[group] = true
		k.histories++
	}
	if ctx, err := env.EncryptionContext(); err == nil {
		if ns, ok := ctx[codec.NamespaceContextKey]; ok {
			k.namespaces[ns] = true
		}
	}
	if at.After(k.lastSeen) {
		k.lastSeen = at
	}
}

// keyGroup is what the payloads of one key have in common: the ARN, with
// the region left out for a multi-Region key.
func keyGroup(keyARN string) string {
	if arn, ok := kms.ParseKeyARN(keyARN); ok && arn.MultiRegion() {
		return arn.InRegion("").String()
	}
	return keyARN
}

// replicaRegions returns the regions of k's replicas other than k.arn's,
// in order: none for a single-Region key.
func (k *keyUsage) replicaRegions() []string {
	var regions []string
	for _, other := range sortedSet(k.arns) {
		if arn, ok := kms.ParseKeyARN(other); ok && other != k.arn {
			regions = append(regions, arn.Region)
		}
	}
	return regions
}

// sorted returns the keys in ARN order.
func (inv *inventory) sorted() []*keyUsage {
	out := make([]*keyUsage, 0, len(inv.keys))
	for _, k := range inv.keys {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].arn < out[j].arn })
	return out
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (inv *inventory) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(inv.keys) > 0 {
		fmt.Fprintln(tw, "KEY ARN\tPAYLOADS\tDATA KEYS\tHISTORIES\tNAMESPACES\tLAST WRITTEN")
		for _, k := range inv.sorted() {
			last := "-"
			if !k.lastSeen.IsZero() {
				last = k.lastSeen.UTC().Format(time.RFC3339)
			}
			ns := strings.Join(sortedSet(k.namespaces), ",")
			if ns == "" {
				ns = "-"
			}
			arn := k.arn
			if regions := k.replicaRegions(); len(regions) > 0 {
				arn += " (and its replicas in " + strings.Join(regions, ", ") + ")"
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", arn, k.payloads, len(k.dataKeys), k.histories, ns, last)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	noun := "histories"
	if inv.histories == 1 {
		noun = "history"
	}
	fmt.Fprintf(w, "%d %s scanned: %d payloads encrypted under %d keys, %d not encrypted",
		inv.histories, noun, inv.encrypted(), len(inv.keys), inv.unencrypted)
	if inv.unsupported > 0 {
		fmt.Fprintf(w, ", %d in another encryption format", inv.unsupported)
	}
	if inv.malformed > 0 {
		fmt.Fprintf(w, ", %d malformed", inv.malformed)
	}
	if inv.skipped > 0 {
		fmt.Fprintf(w, "; %d workflows could not be read", inv.skipped)
	}
	_, err := fmt.Fprintln(w, ".")
	return err
}

func (inv *inventory) encrypted() int {
	n := 0
	for _, k := range inv.keys {
		n += k.payloads
	}
	return n
}

// keysReport is the JSON form of an inventory.
type keysReport struct {
	Histories           int             `json:"histories"`
	SkippedHistories    int             `json:"skipped_histories"`
	Keys                []keyUsageEntry `json:"keys"`
	UnencryptedPayloads int             `json:"unencrypted_payloads"`
	UnsupportedPayloads int             `json:"unsupported_payloads"`
	MalformedPayloads   int             `json:"malformed_payloads"`
}

type keyUsageEntry struct {
	KeyARN string `json:"key_arn"`
	// ReplicaARNs are, for a multi-Region key whose payloads record
	// several of its replicas, every ARN recorded, KeyARN included.
	ReplicaARNs []string   `json:"replica_arns,omitempty"`
	Payloads    int        `json:"payloads"`
	DataKeys    int        `json:"data_keys"`
	Histories   int        `json:"histories"`
	Namespaces  []string   `json:"namespaces"`
	LastWritten *time.Time `json:"last_written,omitempty"`
}

func (inv *inventory) writeJSON(w io.Writer) error {
	r := keysReport{
		Histories:           inv.histories,
		SkippedHistories:    inv.skipped,
		Keys:                []keyUsageEntry{},
		UnencryptedPayloads: inv.unencrypted,
		UnsupportedPayloads: inv.unsupported,
		MalformedPayloads:   inv.malformed,
	}
	for _, k := range inv.sorted() {
		e := keyUsageEntry{KeyARN: k.arn, Payloads: k.payloads, DataKeys: len(k.dataKeys), Histories: k.histories, Namespaces: sortedSet(k.namespaces)}
		if len(k.arns) > 1 {
			e.ReplicaARNs = sortedSet(k.arns)
		}
		if !k.lastSeen.IsZero() {
			t := k.lastSeen.UTC()
			e.LastWritten = &t
		}
		r.Keys = append(r.Keys, e)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
