// Package integration runs kmscodec end to end: real workflows on a
// Temporal development server, with data keys from a KMS emulator reached
// through the real aws-sdk-go-v2 client. Nothing on the payload path is
// mocked, and KMS calls are counted at the emulator.
package integration

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// server is the Temporal dev server shared by every test in this package.
// One server keeps the suite fast (it starts in seconds, but under -race
// on two cores that adds up); tests stay independent by using their own
// task queues, workflow IDs, KMS emulators and keys.
var server *harness.Temporal

// Namespaces created at start, besides "default".
const (
	namespace1 = "ns1"
	namespace2 = "ns2"
)

func TestMain(m *testing.M) {
	// The worker-restart test runs this binary again as a worker process.
	if os.Getenv(workerProcessEnv) != "" {
		os.Exit(workerProcessMain())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	server, err = harness.LaunchTemporal(context.Background(), harness.TemporalOptions{
		Namespaces: []string{namespace1, namespace2},
	})
	if err != nil {
		// Fail, never skip: a CI run without a server must not pass.
		fmt.Fprintf(os.Stderr, "FAIL: integration tests need the Temporal dev server: %v\n", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "Temporal dev server log (tail):\n%s\n", server.Log())
	}
	if err := server.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return code
}
