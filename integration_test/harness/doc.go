// Package harness starts the real services that the kmscodec integration
// tests and the demo run against, so that nothing on the payload path is
// mocked:
//
//   - an AWS KMS emulator (local-kms) served in-process over HTTP on
//     127.0.0.1 and reached through the real aws-sdk-go-v2 KMS client, with a
//     per-operation call counter taken at the server side (see [StartKMS]);
//   - a fault-injecting reverse proxy to put in front of the emulator,
//     which throttles, fails, delays or drops KMS requests on command
//     (see [StartFaultProxy]);
//   - a Temporal development server run from the Temporal CLI binary as a
//     child process (see [StartTemporal]).
//
// Every listener binds 127.0.0.1 on a port chosen at run time, so several
// test binaries can run side by side. The Start* functions take a
// [testing.TB], fail the test on error and stop what they started in
// t.Cleanup. Programs that have no testing.TB (such as the demo) use the
// New*/Launch* variants and call Close/Stop themselves.
//
// The Temporal CLI is located with [TemporalCLIPath]: the TEMPORAL_CLI
// environment variable (which the Makefile sets), else the binary that
// `make temporal-cli` builds into .cache/ of the repository.
package harness
