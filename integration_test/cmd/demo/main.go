// Command demo runs one workflow whose payloads are encrypted with
// kmscodec, then shows what the Temporal server stored and what the codec
// decodes it to.
//
// With -ui it keeps running instead: a Temporal dev server with its Web
// UI, a kmscodec codec server that the Web UI decodes through, and a few
// workflows to look at, until Ctrl-C.
//
// It needs nothing but Go: it starts a Temporal dev server (the Temporal
// CLI that `make temporal-cli` builds) and an in-process KMS emulator, and
// stops both before it exits. Run it with `make demo` or `make demo-ui`.
package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"maps"
	"os"
	"os/signal"
	"slices"
	"syscall"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// Greet is the demo workflow.
func Greet(_ workflow.Context, name string) (string, error) {
	return "Hello, " + name, nil
}

func main() {
	ui := flag.Bool("ui", false, "keep the Web UI, a codec server and a few workflows running until Ctrl-C")
	flag.Parse()
	// Ctrl-C, or SIGTERM from a supervisor, ends either mode cleanly.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	run := runOnce
	if *ui {
		run = runUI
	}
	if err := run(ctx); err != nil {
		if ctx.Err() != nil {
			// Interrupted while starting: everything started is stopped.
			log.Fatal("interrupted")
		}
		log.Fatal(err)
	}
}

func runOnce(ctx context.Context) error {

	// Stand-ins for AWS KMS and a Temporal cluster.
	dir, err := os.MkdirTemp("", "kmscodec-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	emulator, err := harness.NewKMS(dir)
	if err != nil {
		return err
	}
	defer emulator.Close()
	keyARN, err := emulator.CreateKey(ctx, "kmscodec demo")
	if err != nil {
		return err
	}
	const alias = "alias/kmscodec-demo"
	if err := emulator.CreateAlias(ctx, alias, keyARN); err != nil {
		return err
	}
	temporal, err := harness.LaunchTemporal(ctx, harness.TemporalOptions{})
	if err != nil {
		return err
	}
	defer temporal.Stop()

	c, dc, err := dialWithCodec(temporal.HostPort, emulator.URL, alias)
	if err != nil {
		return err
	}
	defer c.Close()

	// A worker and a starter, both with the codec.
	w := worker.New(c, "kmscodec-demo", worker.Options{})
	w.RegisterWorkflow(Greet)
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: "kmscodec-demo"}, Greet, "Alice")
	if err != nil {
		return err
	}
	var greeting string
	if err := run.Get(ctx, &greeting); err != nil {
		return err
	}
	fmt.Printf("Workflow %s returned %q\n\n", run.GetID(), greeting)

	// What the server stored, read back without the codec.
	events := c.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	first, err := events.Next()
	if err != nil {
		return err
	}
	stored := first.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()[0]
	fmt.Println("Workflow input as stored by the Temporal server:")
	for _, k := range slices.Sorted(maps.Keys(stored.GetMetadata())) {
		v := stored.GetMetadata()[k]
		if k == "encryption-data-key" {
			fmt.Printf("  %-20s %s\n", k, hexPrefix(v))
		} else {
			fmt.Printf("  %-20s %s\n", k, v)
		}
	}
	fmt.Printf("  %-20s %s\n\n", "data", hexPrefix(stored.GetData()))

	var name string
	if err := dc.FromPayload(stored, &name); err != nil {
		return err
	}
	fmt.Printf("Decoded by the codec: %q\n", name)
	fmt.Printf("KMS calls: GenerateDataKey=%d Decrypt=%d DescribeKey=%d\n",
		emulator.Calls(harness.OpGenerateDataKey), emulator.Calls(harness.OpDecrypt), emulator.Calls(harness.OpDescribeKey))
	return nil
}

// hexPrefix shows the length and the first 16 bytes of b in hex.
// dialWithCodec connects a client whose payloads and failures the codec
// encrypts under keyID, with keys from the KMS at kmsURL, and returns its
// data converter too. With AWS, the KMS client is kms.NewFromConfig(cfg)
// with cfg from config.LoadDefaultConfig(ctx).
func dialWithCodec(hostPort, kmsURL, keyID string) (client.Client, converter.DataConverter, error) {
	kmsCodec, err := codec.New(codec.Options{KMS: harness.NewKMSClient(kmsURL), KeyID: keyID})
	if err != nil {
		return nil, nil, err
	}
	dc := codec.NewDataConverter(kmsCodec, codec.DataConverterOptions{})
	c, err := client.Dial(client.Options{
		HostPort:         hostPort,
		DataConverter:    dc,
		FailureConverter: codec.NewFailureConverter(dc),
		Logger:           harness.QuietLogger(),
	})
	return c, dc, err
}

func hexPrefix(b []byte) string {
	n := min(len(b), 16)
	s := fmt.Sprintf("%d bytes: %s", len(b), hex.EncodeToString(b[:n]))
	if n < len(b) {
		s += "…"
	}
	return s
}
