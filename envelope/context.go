package envelope

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"unicode/utf8"
)

// The encryption-context metadata value has exactly one valid encoding
// per context, the canonical one that docs/FORMAT.md specifies: a JSON
// object of string members, keys unique and sorted by their UTF-8 bytes,
// no white space, and only the escapes that JSON requires, written one
// fixed way. The AAD covers these bytes while KMS is given the parsed
// map, so a second spelling of the same map would let two decoders (or a
// decoder and a human reading the history) disagree about which context
// a payload is bound to; with one spelling they cannot.

// MarshalContext returns the encryption-context metadata value for ctx
// in the canonical encoding. It returns nil for an empty context, which
// is left out of the metadata, and ErrMalformed for a key or value that
// is not valid UTF-8.
func MarshalContext(ctx map[string]string) ([]byte, error) {
	if len(ctx) == 0 {
		return nil, nil
	}
	keys := make([]string, 0, len(ctx))
	size := 1
	for k, v := range ctx {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("%w: encryption context is not valid UTF-8", ErrMalformed)
		}
		keys = append(keys, k)
		size += len(k) + len(v) + 6
	}
	slices.Sort(keys) // Go compares strings by their bytes: UTF-8 byte order
	b := make([]byte, 0, size)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCanonicalString(b, k)
		b = append(b, ':')
		b = appendCanonicalString(b, ctx[k])
	}
	return append(b, '}'), nil
}

// appendCanonicalString appends s, valid UTF-8, as a JSON string that
// escapes only what JSON requires: the quote, the backslash, and the
// control characters U+0000 to U+001F, five of them by their short
// escapes and the rest as \u00 and two lower-case hex digits. (Go's
// encoding/json would also escape U+2028 and U+2029, which the canonical
// form writes as themselves.)
func appendCanonicalString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// parseContext parses an encryption-context metadata value and checks
// that it is in the canonical encoding, the way any decoder can: parse,
// re-encode canonically, compare the bytes. Duplicate keys, white space,
// unsorted keys, invalid UTF-8 (which encoding/json replaces with
// U+FFFD) and any other escape all make the bytes differ.
func parseContext(contextJSON []byte) (map[string]string, error) {
	var ctx map[string]string
	if err := json.Unmarshal(contextJSON, &ctx); err != nil || ctx == nil {
		return nil, fmt.Errorf("%w: %s is not a JSON object of strings", ErrMalformed, MetadataContext)
	}
	canonical, err := MarshalContext(ctx)
	if err != nil || !bytes.Equal(canonical, contextJSON) {
		return nil, fmt.Errorf("%w: %s is not in the canonical encoding (sorted unique keys, no white space, minimal escapes, UTF-8)", ErrMalformed, MetadataContext)
	}
	return ctx, nil
}
