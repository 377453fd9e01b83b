package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/temporal-kms/kmscodec/codec"
)

// legacyFlags let serve and decode read payloads of the static-key codec
// of Temporal's encryption samples, written before a namespace moved to
// kmscodec.
type legacyFlags struct {
	keyFile string
}

func (l *legacyFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&l.keyFile, "legacy-key-file", "",
		`JSON file {"<key id>": "<base64 32-byte key>"} of the static AES-256 keys of Temporal's encryption samples, to decode payloads written before kmscodec (decode only; the file must not be accessible to other users)`)
}

// apply sets opts.Legacy from --legacy-key-file, if given. Payloads in
// the legacy layout under a key ID not in the file then fail with
// codec.ErrLegacyKeyUnknown, naming the key ID.
func (l *legacyFlags) apply(opts *codec.Options) error {
	if l.keyFile == "" {
		return nil
	}
	keys, err := codec.LoadLegacyKeys(l.keyFile)
	if err != nil {
		return fmt.Errorf("--legacy-key-file: %w", err)
	}
	decoder, err := codec.NewLegacyStaticKeyDecoder(keys)
	if err != nil {
		return fmt.Errorf("--legacy-key-file %s: %w", l.keyFile, err)
	}
	opts.Legacy = decoder
	return nil
}
