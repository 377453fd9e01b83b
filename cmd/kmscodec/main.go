// Command kmscodec works with Temporal payloads that kmscodec encrypted
// with AWS KMS envelope encryption.
//
//	kmscodec serve    a codec server for the Temporal Web UI and CLI
//	kmscodec decode   decrypts the payloads of a history or payloads file
//	kmscodec keys     lists the KMS keys that payloads were encrypted under
//	kmscodec hash-token  prints a token's line prefix for --scoped-token-file
//
// Every flag can also be set by an environment variable, named after the
// flag: --max-body-bytes is KMSCODEC_MAX_BODY_BYTES. A flag given on the
// command line wins over the variable.
//
// Exit status is 0 on success, 1 when the work failed, and 2 when the
// command line or configuration is wrong.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv))
}

// run executes one command line. It is main without the process: tests
// call it with their own streams and environment.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	// SIGTERM is how orchestrators stop a server; both signals cancel the
	// context so serve shuts down gracefully and decode/keys stop early.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	app := &app{stdin: stdin, stdout: stdout, stderr: stderr, lookupEnv: lookupEnv}
	root := app.rootCommand()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "kmscodec: %v\n", err)
	var usage *usageError
	if errors.As(err, &usage) {
		if usage.cmd != "" {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", usage.cmd)
		}
		return exitUsage
	}
	return exitFailure
}

// app carries the process's streams and environment to the commands.
type app struct {
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	lookupEnv func(string) (string, bool)
}

// usageError is a mistake on the command line or in the configuration:
// the command did not start its work. It exits with status 2.
type usageError struct {
	cmd string // the command path, for the hint to run --help
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usageError for cmd.
func usagef(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd.CommandPath(), err: fmt.Errorf(format, args...)}
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "kmscodec",
		Short: "Serve, decode and inventory Temporal payloads encrypted with AWS KMS",
		Long: `kmscodec works with Temporal payloads that the kmscodec PayloadCodec
encrypted with AWS KMS envelope encryption.

  serve    runs a codec server for the Temporal Web UI and CLI
  decode   decrypts the payloads of a history or payloads file, offline
  keys     lists the KMS keys that payloads were encrypted under
  hash-token  prints a token's line prefix for serve --scoped-token-file

Every flag can also be set by an environment variable named after it:
--max-body-bytes is KMSCODEC_MAX_BODY_BYTES. A flag on the command line
wins over the variable.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Without subcommand there is nothing to do but explain.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{cmd: cmd.CommandPath(), err: err}
	})
	root.AddCommand(a.serveCommand(), a.decodeCommand(), a.keysCommand(), a.hashTokenCommand())
	root.Args = wrapArgs(root.Args)
	for _, c := range root.Commands() {
		c.Args = wrapArgs(c.Args)
	}
	return root
}

// wrapArgs makes a positional-argument error a usageError.
func wrapArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	if check == nil {
		return nil
	}
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &usageError{cmd: cmd.CommandPath(), err: err}
		}
		return nil
	}
}
