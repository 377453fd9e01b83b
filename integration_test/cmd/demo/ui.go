package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// Order is the input of ShipOrder: what a shop would rather not store in
// the clear.
type Order struct {
	ID       string   `json:"id"`
	Customer string   `json:"customer"`
	Email    string   `json:"email"`
	Items    []string `json:"items"`
	Total    float64  `json:"total"`
}

// Receipt is what ChargeCard returns.
type Receipt struct {
	OrderID      string  `json:"order_id"`
	Charged      float64 `json:"charged"`
	Confirmation string  `json:"confirmation"`
}

// Shipment is the argument of ShipOrder's "ship" signal.
type Shipment struct {
	Address string `json:"address"`
	Carrier string `json:"carrier"`
}

// ChargeCard is the demo activity.
func ChargeCard(_ context.Context, order Order) (Receipt, error) {
	return Receipt{OrderID: order.ID, Charged: order.Total, Confirmation: "ch_" + strings.ToLower(order.ID)}, nil
}

// ShipOrder charges an order, then waits for the signal "ship" to say
// where it goes.
func ShipOrder(ctx workflow.Context, order Order) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var receipt Receipt
	if err := workflow.ExecuteActivity(ctx, ChargeCard, order).Get(ctx, &receipt); err != nil {
		return "", err
	}
	var shipment Shipment
	workflow.GetSignalChannel(ctx, "ship").Receive(ctx, &shipment)
	return fmt.Sprintf("%s: charged %.2f (%s), shipped by %s to %s",
		order.ID, receipt.Charged, receipt.Confirmation, shipment.Carrier, shipment.Address), nil
}

// uiTaskQueue is the task queue of the -ui demo's worker.
const uiTaskQueue = "kmscodec-demo-ui"

// demoWorkflow is a workflow the -ui demo starts: its input, and the
// signal that lets it finish (nil: it is left running).
type demoWorkflow struct {
	order Order
	ship  *Shipment
}

var demoWorkflows = []demoWorkflow{
	{Order{ID: "order-1001", Customer: "Ada Lovelace", Email: "ada@example.com", Items: []string{"analytical engine", "punched cards"}, Total: 129.50},
		&Shipment{Address: "12 St James's Square, London", Carrier: "Royal Mail"}},
	{Order{ID: "order-1002", Customer: "Grace Hopper", Email: "grace@example.com", Items: []string{"COBOL manual"}, Total: 42.00},
		&Shipment{Address: "1 Navy Yard, Arlington VA", Carrier: "USPS"}},
	{Order{ID: "order-1003", Customer: "Alan Turing", Email: "alan@example.com", Items: []string{"bombe rotor", "teleprinter tape"}, Total: 310.25}, nil},
}

// runUI runs the Web UI demo until ctx ends: the KMS emulator, kmscodec
// serve (the binary built from this repository) decoding for the Web UI
// of a Temporal dev server, a worker, and a few workflows.
func runUI(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "kmscodec-demo-ui-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Println("Starting the KMS emulator, the codec server and the Temporal dev server with its Web UI…")
	emulator, err := harness.NewKMS(filepath.Join(dir, "kms"))
	if err != nil {
		return err
	}
	defer stopping("KMS emulator", func() error { emulator.Close(); return nil })
	keyARN, err := emulator.CreateKey(ctx, "kmscodec demo")
	if err != nil {
		return err
	}
	const alias = "alias/kmscodec-demo"
	if err := emulator.CreateAlias(ctx, alias, keyARN); err != nil {
		return err
	}

	// The Web UI calls the codec server from the browser, so the codec
	// server must allow the UI's origin: pick the UI's port first.
	uiPort, err := harness.FreePort()
	if err != nil {
		return err
	}
	codecServer, err := launchCodecServer(dir, emulator.URL, keyARN, uiPort)
	if err != nil {
		return err
	}
	defer stopping("codec server", func() error { return codecServer.Process.Stop(10 * time.Second) })

	temporalServer, err := harness.LaunchTemporal(ctx, harness.TemporalOptions{
		UI:        true,
		UIPort:    uiPort,
		ExtraArgs: []string{"--ui-codec-endpoint", codecServer.URL},
	})
	if err != nil {
		return err
	}
	defer stopping("Temporal dev server", temporalServer.Stop)

	c, _, err := dialWithCodec(temporalServer.HostPort, emulator.URL, alias)
	if err != nil {
		return err
	}
	defer c.Close()
	w := worker.New(c, uiTaskQueue, worker.Options{})
	w.RegisterWorkflow(Greet)
	w.RegisterWorkflow(ShipOrder)
	w.RegisterActivity(ChargeCard)
	if err := w.Start(); err != nil {
		return err
	}
	defer stopping("worker", func() error { w.Stop(); return nil })

	states, err := startDemoWorkflows(ctx, c)
	if err != nil {
		return err
	}
	printUIGuide(temporalServer, codecServer.URL, alias, keyARN, states)

	<-ctx.Done()
	fmt.Println("\nStopping…")
	return nil
}

// launchCodecServer runs kmscodec serve on loopback without
// authentication, decrypting with the emulator's key for the Web UI on
// uiPort (as http://127.0.0.1 or http://localhost).
func launchCodecServer(dir, kmsURL, keyARN string, uiPort int) (*harness.CodecServer, error) {
	none := filepath.Join(dir, "none")
	env := []string{
		// The emulator checks no signature, but the AWS SDK signs every
		// request; the shared config files point at nothing so that an
		// AWS profile of the user's cannot change what the demo runs
		// against.
		"AWS_ACCESS_KEY_ID=AKIDLOCALKMS",
		"AWS_SECRET_ACCESS_KEY=local-kms-secret",
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_CONFIG_FILE=" + none,
		"AWS_SHARED_CREDENTIALS_FILE=" + none,
		"AWS_EC2_METADATA_DISABLED=true",
		"KMSCODEC_AUTH_TOKEN=",
	}
	port := strconv.Itoa(uiPort)
	return harness.LaunchCodecServer(dir, env,
		"--kms-endpoint", kmsURL,
		"--region", harness.Region,
		"--key-id", keyARN,
		"--insecure-no-auth",
		"--cors-origin", "http://127.0.0.1:"+port,
		"--cors-origin", "http://localhost:"+port,
		"--log-format", "text")
}

// workflowState is a started demo workflow and how it ended.
type workflowState struct {
	id     string
	status string
}

// startDemoWorkflows starts the demo's workflows, lets all but the last
// finish, and says where each is.
func startDemoWorkflows(ctx context.Context, c client.Client) ([]workflowState, error) {
	// Fixed IDs: the dev server is new and holds no other workflow.
	opts := func(id string) client.StartWorkflowOptions {
		return client.StartWorkflowOptions{ID: id, TaskQueue: uiTaskQueue}
	}
	var states []workflowState
	greet, err := c.ExecuteWorkflow(ctx, opts("greet-alice"), Greet, "Alice")
	if err != nil {
		return nil, err
	}
	var greeting string
	if err := greet.Get(ctx, &greeting); err != nil {
		return nil, err
	}
	states = append(states, workflowState{greet.GetID(), fmt.Sprintf("completed: %q", greeting)})

	for _, d := range demoWorkflows {
		run, err := c.ExecuteWorkflow(ctx, opts(d.order.ID), ShipOrder, d.order)
		if err != nil {
			return nil, err
		}
		if d.ship == nil {
			states = append(states, workflowState{run.GetID(), `running, waiting for the signal "ship"`})
			continue
		}
		if err := c.SignalWorkflow(ctx, run.GetID(), run.GetRunID(), "ship", *d.ship); err != nil {
			return nil, err
		}
		var result string
		if err := run.Get(ctx, &result); err != nil {
			return nil, err
		}
		states = append(states, workflowState{run.GetID(), "completed"})
	}
	return states, nil
}

// printUIGuide says what runs where and what to look at.
func printUIGuide(s *harness.Temporal, codecURL, alias, keyARN string, states []workflowState) {
	workflows := s.UIAddress + "/namespaces/default/workflows"
	fmt.Printf(`
kmscodec demo with the Temporal Web UI

  Web UI        %s
  Codec server  %s (kmscodec serve --insecure-no-auth, on loopback only)
  Temporal      %s (namespace default)
  KMS key       %s -> %s (in the emulator)

Workflows, their payloads encrypted by the worker's codec:
`, workflows, codecURL, s.HostPort, alias, keyARN)
	for _, st := range states {
		fmt.Printf("  %-12s %s\n    %s/%s\n", st.id, st.status, workflows, url.PathEscape(st.id))
	}
	fmt.Printf(`
Open a workflow: its Input and Result show decrypted, because the Web UI
sends the payloads to the codec server (Settings > Codec Server shows
the endpoint). The Temporal server itself holds only ciphertext.
`)
	if cli, err := harness.TemporalCLIPath(); err == nil {
		fmt.Printf(`
The same with the Temporal CLI, without and with the codec server:
  %[1]s workflow show -w order-1001 --address %[2]s
  %[1]s workflow show -w order-1001 --address %[2]s --codec-endpoint %[3]s
`, cli, s.HostPort, codecURL)
	}
	fmt.Println("\nPress Ctrl-C to stop.")
}

// stopping stops one part of the demo, saying so.
func stopping(what string, stop func() error) {
	if err := stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping the %s: %v\n", what, err)
		return
	}
	fmt.Printf("  stopped the %s\n", what)
}
