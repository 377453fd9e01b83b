package envelope

// Fuzz targets for everything a decoder does to a payload it did not
// write: Parse, EncryptionContext and Open on arbitrary metadata and data,
// and the payload parser that reads the decrypted plaintext. The seed
// corpora in testdata/fuzz/ hold the test vectors and edge cases (rewrite
// them with -update-seeds; other files there are crashers kept as
// regression tests); `go test` replays them, `go test -fuzz` explores
// from them.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpora in testdata/fuzz/ from the test vectors and edge cases")

// Bits of the absent argument of FuzzOpen: which metadata fields the
// payload leaves out.
const (
	absentEncoding = 1 << iota
	absentFormat
	absentKeyID
	absentDataKey
	absentContext
)

// fuzzPayload builds the payload a fuzz input describes.
func fuzzPayload(encoding, format, keyID, dataKey, contextJSON, data []byte, absent uint8) *commonpb.Payload {
	md := map[string][]byte{}
	for i, f := range []struct {
		name  string
		value []byte
	}{
		{MetadataEncoding, encoding},
		{MetadataFormat, format},
		{MetadataKeyID, keyID},
		{MetadataDataKey, dataKey},
		{MetadataContext, contextJSON},
	} {
		if absent&(1<<i) == 0 {
			md[f.name] = f.value
		}
	}
	return &commonpb.Payload{Metadata: md, Data: data}
}

// authenticated is what the AAD and the tag of a payload cover: a payload
// that opens must have been sealed with exactly these bytes.
func authenticated(p *commonpb.Payload) string {
	md := p.GetMetadata()
	ctx, hasCtx := md[MetadataContext]
	return strings.Join([]string{
		string(md[MetadataKeyID]), string(md[MetadataDataKey]),
		string(ctx), map[bool]string{true: "ctx", false: "no ctx"}[hasCtx],
		string(p.GetData()),
	}, "\x00")
}

// fuzzVectors are the test vectors as the fuzz targets use them.
type fuzzVectors struct {
	dataKey []byte
	// sealed and plaintexts are by vector name.
	sealed     map[string]*commonpb.Payload
	plaintexts map[string][]byte
	// opens maps the authenticated bytes of each good vector to the
	// payload it opens to: the only payloads the vectors' data key can
	// open.
	opens map[string]*commonpb.Payload
}

func loadFuzzVectors(tb testing.TB) fuzzVectors {
	tb.Helper()
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		tb.Fatalf("no test vectors in testdata/ (%v)", err)
	}
	v := fuzzVectors{sealed: map[string]*commonpb.Payload{}, plaintexts: map[string][]byte{}, opens: map[string]*commonpb.Payload{}}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			tb.Fatal(err)
		}
		var fields vector
		if err := json.Unmarshal(raw, &fields); err != nil {
			tb.Fatalf("%s: %v", file, err)
		}
		v.dataKey = mustHex(tb, fields.DataKey)
		sealed := payloadFromJSON(tb, fields.Sealed)
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		v.sealed[name] = sealed
		if strings.HasPrefix(name, "good_") {
			v.opens[authenticated(sealed)] = payloadFromJSON(tb, fields.Input)
			v.plaintexts[name] = mustHex(tb, fields.Plaintext)
		}
	}
	return v
}

// specAAD builds the additional data exactly as docs/FORMAT.md writes it,
// independently of the implementation.
func specAAD(keyARN, wrappedKey, contextJSON []byte) []byte {
	aad := []byte("kms-envelope-v1")
	for _, field := range [][]byte{keyARN, wrappedKey, contextJSON} {
		aad = binary.BigEndian.AppendUint32(aad, uint32(len(field)))
		aad = append(aad, field...)
	}
	return aad
}

// allocatedBy returns how many heap bytes f allocates.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// allocationBound is what a decoder may allocate for an input of n bytes:
// a few copies of the input (the additional data, the plaintext, the parsed
// context) and a fixed amount for ciphers and maps. Nothing a payload
// claims may make it allocate more.
func allocationBound(n int) uint64 { return 256<<10 + 8*uint64(n) }

// FuzzOpen feeds arbitrary metadata and data to Parse, EncryptionContext
// and Open with the vectors' data key, and checks that each stops with
// one of its documented errors, that Parse accepts only what
// docs/FORMAT.md allows, that only payloads sealed under the key open,
// and that memory stays proportional to the input.
func FuzzOpen(f *testing.F) {
	vectors := loadFuzzVectors(f)
	if *updateSeeds {
		seeds := map[string][]any{}
		for name, p := range vectors.sealed {
			seeds["vector-"+name] = openSeed(p)
		}
		for name, p := range openEdgeCases(vectors.sealed["good_basic"]) {
			seeds["edge-"+name] = openSeed(p)
		}
		writeSeeds(f, "FuzzOpen", seeds)
	}
	otherKey := bytes.Repeat([]byte{0xa5}, DataKeySize)

	f.Fuzz(func(t *testing.T, encoding, format, keyID, dataKey, contextJSON, data []byte, absent uint8) {
		p := fuzzPayload(encoding, format, keyID, dataKey, contextJSON, data, absent)
		original := proto.Clone(p)
		inputSize := len(encoding) + len(format) + len(keyID) + len(dataKey) + len(contextJSON) + len(data)

		var (
			e                     *Envelope
			parseErr, ctxErr      error
			ctx                   map[string]string
			opened, openedOther   *commonpb.Payload
			openErr, openOtherErr error
		)
		allocated := allocatedBy(func() {
			e, parseErr = Parse(p)
			if parseErr != nil {
				return
			}
			ctx, ctxErr = e.EncryptionContext()
			opened, openErr = e.Open(vectors.dataKey)
			openedOther, openOtherErr = e.Open(otherKey)
		})
		if bound := allocationBound(inputSize); allocated > bound {
			t.Fatalf("allocated %d bytes for a %d-byte input, over the bound of %d", allocated, inputSize, bound)
		}
		if !proto.Equal(p, original) {
			t.Fatal("decoding modified its input payload")
		}

		md := p.Metadata
		if parseErr != nil {
			if e != nil {
				t.Fatal("Parse returned an envelope with an error")
			}
			if !errors.Is(parseErr, ErrNotEncrypted) && !errors.Is(parseErr, ErrUnsupportedFormat) && !errors.Is(parseErr, ErrMalformed) {
				t.Fatalf("Parse failed with an undocumented error: %v", parseErr)
			}
			return
		}

		// Parse accepts only what the format allows.
		ctxField, hasCtx := md[MetadataContext]
		switch {
		case string(md[MetadataEncoding]) != EncodingEncrypted || string(md[MetadataFormat]) != Format:
			t.Fatalf("Parse accepted encoding %q, format %q", md[MetadataEncoding], md[MetadataFormat])
		case len(md[MetadataKeyID]) == 0 || len(md[MetadataKeyID]) > MaxKeyARNSize:
			t.Fatalf("Parse accepted a %d-byte key ARN", len(md[MetadataKeyID]))
		case len(md[MetadataDataKey]) == 0 || len(md[MetadataDataKey]) > MaxWrappedKeySize:
			t.Fatalf("Parse accepted a %d-byte wrapped key", len(md[MetadataDataKey]))
		case hasCtx && (len(ctxField) == 0 || len(ctxField) > MaxContextSize):
			t.Fatalf("Parse accepted a %d-byte context", len(ctxField))
		case len(p.Data) < Overhead:
			t.Fatalf("Parse accepted %d bytes of data", len(p.Data))
		}
		if e.KeyARN != string(md[MetadataKeyID]) || !bytes.Equal(e.WrappedKey, md[MetadataDataKey]) || !bytes.Equal(e.ContextJSON, ctxField) {
			t.Fatal("the envelope does not name what the metadata holds")
		}
		if e.KeyIdentity() != string(specAAD(md[MetadataKeyID], md[MetadataDataKey], ctxField)) {
			t.Fatal("KeyIdentity differs from the AAD that docs/FORMAT.md specifies")
		}

		// The context is a JSON object of strings, or the payload is malformed.
		switch {
		case ctxErr != nil:
			if !errors.Is(ctxErr, ErrMalformed) {
				t.Fatalf("EncryptionContext failed with an undocumented error: %v", ctxErr)
			}
		case !hasCtx:
			if ctx != nil {
				t.Fatalf("no context field, but context %v", ctx)
			}
		default:
			again, err := MarshalContext(ctx)
			if err != nil {
				t.Fatalf("a parsed context does not marshal: %v", err)
			}
			var back map[string]string
			if len(ctx) > 0 && (json.Unmarshal(again, &back) != nil || !maps.Equal(back, ctx)) {
				t.Fatal("a parsed context does not survive marshalling")
			}
		}

		// Only what was sealed under the vectors' data key opens, and it
		// opens to what was sealed; nothing opens under two data keys.
		if openOtherErr == nil || openedOther != nil {
			t.Fatal("a payload opened under a data key it was not sealed with")
		}
		for _, err := range []error{openErr, openOtherErr} {
			if err != nil && !errors.Is(err, ErrAuthentication) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("Open failed with an undocumented error: %v", err)
			}
		}
		if openErr == nil {
			want, ok := vectors.opens[authenticated(p)]
			if !ok {
				t.Fatal("Open accepted a payload that was never sealed: forgery")
			}
			if !proto.Equal(opened, want) {
				t.Fatal("Open returned another payload than the one sealed")
			}
		}
	})
}

// FuzzUnmarshalPayload checks the parser that reads decrypted plaintext
// in place against proto.Unmarshal, the reference: on any bytes, the two
// agree on whether they are a payload and on which payload.
func FuzzUnmarshalPayload(f *testing.F) {
	if *updateSeeds {
		seeds := map[string][]any{}
		for name, b := range loadFuzzVectors(f).plaintexts {
			seeds["vector-"+name] = []any{b}
		}
		for name, b := range wireEdgeCases() {
			seeds["edge-"+name] = []any{b}
		}
		writeSeeds(f, "FuzzUnmarshalPayload", seeds)
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		want := &commonpb.Payload{}
		wantErr := proto.Unmarshal(wire, want)
		var got *commonpb.Payload
		var err error
		owned := bytes.Clone(wire)
		allocated := allocatedBy(func() { got, err = unmarshalPayload(owned) })
		if bound := allocationBound(len(wire)); allocated > bound {
			t.Fatalf("allocated %d bytes for %d bytes of plaintext, over the bound of %d", allocated, len(wire), bound)
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("unmarshalPayload error %v, proto.Unmarshal error %v", err, wantErr)
		}
		if err == nil && !proto.Equal(got, want) {
			t.Fatal("unmarshalPayload and proto.Unmarshal give different payloads")
		}
	})
}

// openSeed is the FuzzOpen input that describes p.
func openSeed(p *commonpb.Payload) []any {
	md := p.GetMetadata()
	var absent uint8
	var fields [5][]byte
	for i, name := range []string{MetadataEncoding, MetadataFormat, MetadataKeyID, MetadataDataKey, MetadataContext} {
		v, ok := md[name]
		if !ok {
			absent |= 1 << i
		}
		fields[i] = v
	}
	return []any{fields[0], fields[1], fields[2], fields[3], fields[4], p.GetData(), absent}
}

// openEdgeCases are payloads at the edges of what a decoder accepts, each
// the good_basic vector with one thing changed, or nothing like it.
func openEdgeCases(basic *commonpb.Payload) map[string]*commonpb.Payload {
	with := func(change func(p *commonpb.Payload)) *commonpb.Payload {
		p := proto.Clone(basic).(*commonpb.Payload)
		change(p)
		return p
	}
	set := func(name string, value []byte) *commonpb.Payload {
		return with(func(p *commonpb.Payload) { p.Metadata[name] = value })
	}
	// contextOfSize is a valid context of exactly n bytes.
	contextOfSize := func(n int) []byte {
		const prefix, suffix = `{"temporal-namespace":"`, `"}`
		return []byte(prefix + strings.Repeat("n", n-len(prefix)-len(suffix)) + suffix)
	}
	return map[string]*commonpb.Payload{
		"empty":                         {},
		"only-encoding":                 {Metadata: map[string][]byte{MetadataEncoding: []byte(EncodingEncrypted)}},
		"encoding-in-capitals":          set(MetadataEncoding, []byte("BINARY/ENCRYPTED")),
		"format-with-nul":               set(MetadataFormat, []byte(Format+"\x00")),
		"data-one-byte-short":           with(func(p *commonpb.Payload) { p.Data = p.Data[:Overhead-1] }),
		"data-without-ciphertext":       with(func(p *commonpb.Payload) { p.Data = p.Data[:Overhead] }),
		"key-arn-at-limit":              set(MetadataKeyID, bytes.Repeat([]byte("k"), MaxKeyARNSize)),
		"key-arn-over-limit":            set(MetadataKeyID, bytes.Repeat([]byte("k"), MaxKeyARNSize+1)),
		"key-arn-not-utf8":              set(MetadataKeyID, []byte("arn:aws:kms:us-east-1:111122223333:key/\xff")),
		"wrapped-key-at-limit":          set(MetadataDataKey, bytes.Repeat([]byte{0xee}, MaxWrappedKeySize)),
		"wrapped-key-over-limit":        set(MetadataDataKey, bytes.Repeat([]byte{0xee}, MaxWrappedKeySize+1)),
		"context-at-limit":              set(MetadataContext, contextOfSize(MaxContextSize)),
		"context-over-limit":            set(MetadataContext, contextOfSize(MaxContextSize+1)),
		"context-null":                  set(MetadataContext, []byte("null")),
		"context-empty-object":          set(MetadataContext, []byte("{}")),
		"context-name-twice":            set(MetadataContext, []byte(`{"app":"billing","temporal-namespace":"other","temporal-namespace":"payments"}`)),
		"context-escaped-same-map":      set(MetadataContext, []byte(`{"app":"billing","temporal-namespace":"p\u0061yments"}`)),
		"context-not-utf8":              set(MetadataContext, []byte("{\"temporal-namespace\":\"\xff\"}")),
		"context-nested-deeply":         set(MetadataContext, bytes.Repeat([]byte("["), MaxContextSize)),
		"context-number-value":          set(MetadataContext, []byte(`{"app":1e999}`)),
		"context-trailing-garbage":      set(MetadataContext, []byte(`{"app":"billing"}{}`)),
		"context-whitespace-only":       set(MetadataContext, []byte(" ")),
		"nested-envelope-no-ciphertext": {Metadata: basic.Metadata, Data: make([]byte, Overhead)},
	}
}

// wireEdgeCases are protobuf encodings at the edges of what a payload
// parser must handle, lengths that claim more than there is among them.
func wireEdgeCases() map[string][]byte {
	field := func(num protowire.Number, value []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), value)
	}
	entry := func(key, value []byte) []byte {
		var e []byte
		if key != nil {
			e = append(e, field(1, key)...)
		}
		if value != nil {
			e = append(e, field(2, value)...)
		}
		return field(1, e)
	}
	claim := func(num protowire.Number, length uint64) []byte {
		b := protowire.AppendTag(nil, num, protowire.BytesType)
		return append(protowire.AppendVarint(b, length), "abc"...)
	}
	external, _ := proto.Marshal(&commonpb.Payload{Data: []byte("d"), ExternalPayloads: []*commonpb.Payload_ExternalPayloadDetails{{SizeBytes: 5}}})
	return map[string][]byte{
		"empty":                    {},
		"data-before-metadata":     append(field(2, []byte("data")), entry([]byte("encoding"), []byte("json/plain"))...),
		"key-twice":                append(entry([]byte("k"), []byte("1")), entry([]byte("k"), []byte("2"))...),
		"entry-without-value":      entry([]byte("k"), nil),
		"entry-without-key":        entry(nil, []byte("v")),
		"empty-entry":              field(1, nil),
		"key-not-utf8":             entry([]byte{0xff}, []byte("v")),
		"entry-with-unknown-field": field(1, append(field(1, []byte("k")), field(3, []byte("x"))...)),
		"unknown-field":            field(9, []byte("u")),
		"external-payloads":        external,
		"data-as-varint":           protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 3),
		"group":                    protowire.AppendTag(protowire.AppendTag(nil, 1, protowire.StartGroupType), 1, protowire.EndGroupType),
		"field-number-zero":        {0x02, 0x00},
		"overlong-tag":             {0x92, 0x00, 0x00},
		"data-claims-2GiB":         claim(2, 1<<31),
		"data-claims-2^63":         claim(2, 1<<63),
		"metadata-claims-2GiB":     claim(1, 1<<31),
		"entry-claims-2GiB":        field(1, claim(2, 1<<31)),
		"truncated-varint":         {0x12, 0xff},
	}
}

// writeSeeds replaces the generated seed files of a fuzz target, those
// named seed-*, with seeds; other files, such as crashers kept as
// regression tests, stay.
func writeSeeds(tb testing.TB, target string, seeds map[string][]any) {
	tb.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
	for _, f := range old {
		os.Remove(f)
	}
	for name, values := range seeds {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		for _, v := range values {
			switch v := v.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			case string:
				fmt.Fprintf(&b, "string(%q)\n", v)
			case uint8:
				fmt.Fprintf(&b, "uint8(%d)\n", v)
			default:
				tb.Fatalf("seed value of type %T", v)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(b.String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}
