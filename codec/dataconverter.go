package codec

import (
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// DataConverterOptions configure NewDataConverter. The zero value is the
// SDK's default converter with encryption and no compression.
type DataConverterOptions struct {
	// Parent turns values into payloads before they are encrypted.
	// Default converter.GetDefaultDataConverter().
	Parent converter.DataConverter

	// Compress zlib-compresses each payload before it is encrypted, when
	// that makes it smaller. Compression lets payload sizes reveal
	// something of their content (how well it compresses), so it is off
	// by default; turn it on for large, repetitive payloads whose size is
	// not sensitive.
	Compress bool
}

// NewDataConverter returns the data converter to set as
// client.Options.DataConverter, on clients and workers alike: values are
// converted by the parent converter, optionally compressed, then
// encrypted by c.
//
// It disables workflow deadlock detection around the codec, because a KMS
// call on a cold cache can take longer than the deadlock detector's one
// second.
func NewDataConverter(c *Codec, opts DataConverterOptions) converter.DataConverter {
	parent := opts.Parent
	if parent == nil {
		parent = converter.GetDefaultDataConverter()
	}
	// Codecs encode last to first, so compression runs before encryption
	// (ciphertext does not compress) and decode undoes them in reverse.
	codecs := []converter.PayloadCodec{c}
	if opts.Compress {
		codecs = append(codecs, converter.NewZlibCodec(converter.ZlibCodecOptions{}))
	}
	return workflow.DataConverterWithoutDeadlockDetection(converter.NewCodecDataConverter(parent, codecs...))
}

// NewFailureConverter returns the failure converter to set as
// client.Options.FailureConverter alongside NewDataConverter. It moves
// failure messages and stack traces into an encoded payload
// (EncodeCommonAttributes), so they are encrypted too; the server sees
// the message "Encoded failure".
func NewFailureConverter(dc converter.DataConverter) converter.FailureConverter {
	return temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
		DataConverter:          dc,
		EncodeCommonAttributes: true,
	})
}
