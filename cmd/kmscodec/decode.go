package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	commonpb "go.temporal.io/api/common/v1"

	"github.com/temporal-kms/kmscodec/codec"
)

// decodeFlags are the flags of kmscodec decode.
type decodeFlags struct {
	kms           kmsFlags
	output        string
	keepGoing     bool
	maxInputBytes int64
}

func (a *app) decodeCommand() *cobra.Command {
	f := &decodeFlags{}
	cmd := &cobra.Command{
		Use:   "decode [FILE]",
		Short: "Decrypt the payloads of a history or payloads file",
		Long: `Decrypt every payload in a JSON document and write the document back with
the payloads decrypted, everything else as it was.

The document is read from FILE, or from standard input if FILE is "-" or
missing. It can be the output of 'temporal workflow show -o json' (a
history), a {"payloads": [...]} codec request, or any JSON holding
payloads: any object with a metadata.encoding field and only the fields
of a Payload is decrypted. The result can be fed to a workflow replayer.

This needs kms:Decrypt on the payloads' keys and no Temporal server: it is
for incident work when no codec server is at hand. Run 'kmscodec keys' on
the file first to learn which keys to allow.`,
		Example: `  temporal workflow show -w order-1234 -o json > history.json
  kmscodec keys history.json
  kmscodec decode history.json \
    --decrypt-key-id arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab \
    --output-file history.decoded.json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.applyEnv(cmd); err != nil {
				return err
			}
			return a.runDecode(cmd, f, args)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.output, "output-file", "", "file to write with mode 0600, through a temporary file beside it renamed into place: a file or symbolic link already there is replaced, never written through (default: standard output)")
	fs.BoolVar(&f.keepGoing, "keep-going", false, "leave payloads that fail to decrypt as they are, report them, and go on (exit status 1 all the same)")
	fs.Int64Var(&f.maxInputBytes, "max-input-bytes", 1<<30, "largest input accepted")
	f.kms.register(fs, false)
	bindEnv(fs, nil)
	return cmd
}

func (a *app) runDecode(cmd *cobra.Command, f *decodeFlags, args []string) error {
	if err := f.kms.validate(cmd, false); err != nil {
		return err
	}
	if f.maxInputBytes <= 0 {
		return usagef(cmd, "--max-input-bytes must be positive")
	}
	doc, err := a.readDocument(args, f.maxInputBytes)
	if err != nil {
		return err
	}
	api, err := f.kms.client(cmd.Context())
	if err != nil {
		return err
	}
	c, err := codec.New(f.kms.codecOptions(api, false))
	if err != nil {
		return &usageError{cmd: cmd.CommandPath(), err: err}
	}

	failed, total, err := decodeDocument(cmd.Context(), c, doc, f.keepGoing, a.stderr)
	if err != nil {
		return err
	}

	b, err := marshalDocument(doc)
	if err != nil {
		return err
	}
	if f.output == "" || f.output == "-" {
		_, err = a.stdout.Write(b)
	} else {
		err = replaceFile(f.output, func(w io.Writer) error {
			_, err := w.Write(b)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d payloads could not be decrypted", failed, total)
	}
	return nil
}

// decodeDocument decrypts every payload in doc in place, in document
// order. A payload that fails ends it with an error naming the payload's
// place, unless keepGoing: then the failure is reported to warn, the
// payload is left as it was, and the others are decoded. It returns how
// many payloads failed, and how many there are.
func decodeDocument(ctx context.Context, c *codec.Codec, doc any, keepGoing bool, warn io.Writer) (failed, total int, err error) {
	sites := findPayloads(doc)
	for _, site := range sites {
		if err := ctx.Err(); err != nil {
			return failed, len(sites), err
		}
		err := decodeSite(c, site)
		if err == nil {
			continue
		}
		if !keepGoing {
			return failed, len(sites), fmt.Errorf("%s: %w", site.path(), err)
		}
		failed++
		fmt.Fprintf(warn, "kmscodec: %s: %v (left as it was)\n", site.path(), err)
	}
	return failed, len(sites), nil
}

// decodeSite decrypts one payload in place. Payloads go one at a time so
// that an error names the payload; the codec's data key cache makes that
// no costlier in KMS calls.
func decodeSite(c *codec.Codec, site payloadSite) error {
	p, err := site.toPayload()
	if err != nil {
		return fmt.Errorf("not a valid payload: %w", err)
	}
	out, err := c.Decode([]*commonpb.Payload{p})
	if err != nil {
		return err
	}
	if out[0] == p {
		// Not encrypted: the codec passed it through, and so does the
		// document, as it was written.
		return nil
	}
	return site.replace(out[0])
}

// readDocument parses the JSON document named by args ("-" or nothing is
// standard input), refusing one larger than max bytes.
func (a *app) readDocument(args []string, max int64) (any, error) {
	in := a.stdin
	name := "standard input"
	if len(args) == 1 && args[0] != "-" {
		file, err := os.Open(args[0])
		if err != nil {
			return nil, err
		}
		defer file.Close()
		in, name = file, args[0]
	}
	limited := &io.LimitedReader{R: in, N: max + 1}
	doc, err := parseDocument(limited)
	if limited.N <= 0 {
		return nil, fmt.Errorf("%s is over the %d-byte limit (--max-input-bytes)", name, max)
	}
	if err != nil {
		if errors.Is(err, errNotJSON) {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return nil, err
	}
	return doc, nil
}

// replaceFile puts what write writes at path, as a file of mode 0600 (it
// holds decrypted workflow data). It writes a temporary file in the same
// directory and renames it into place, so that path holds either what
// was there before or all of the output, never part of it; the rename
// replaces a symbolic link at path instead of writing through it, so a
// link planted there cannot direct the data elsewhere. On failure the
// temporary file is removed.
func replaceFile(path string, write func(io.Writer) error) (err error) {
	// CreateTemp opens with O_EXCL and mode 0600.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kmscodec-*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := write(tmp); err != nil {
		return err
	}
	// Flushed before the rename, so that a crash cannot leave an empty
	// file where the output was said to be written.
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
