package main

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/temporal-kms/kmscodec/codec/codecserver"
)

func (a *app) hashTokenCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "hash-token",
		Short: "Print the --scoped-token-file line prefix of a token read from stdin",
		Long: `Read a bearer token from the first line of standard input and print
"sha256:<hex of its SHA-256>", the start of its line in a
--scoped-token-file; add the namespaces it may use after a space. The
token is read from stdin, not an argument, so that it stays out of the
process list and the shell history.`,
		Example: `  openssl rand -hex 32 > payments.token
  echo "$(kmscodec hash-token < payments.token) payments,payments-staging" >> tokens.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			line, err := bufio.NewReader(a.stdin).ReadString('\n')
			token := strings.TrimSpace(line)
			if token == "" {
				if err != nil && err.Error() != "EOF" {
					return fmt.Errorf("reading the token: %w", err)
				}
				return usagef(cmd, "no token on standard input")
			}
			if len(token) < codecserver.MinTokenLength {
				return usagef(cmd, "the token is %d characters; use at least %d random ones (e.g. 'openssl rand -hex 32')", len(token), codecserver.MinTokenLength)
			}
			fmt.Fprintln(a.stdout, codecserver.HashToken(token))
			return nil
		},
	}
}
