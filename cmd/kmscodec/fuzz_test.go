package main

// Fuzz target for the command: the history decoder of `kmscodec decode`
// (FuzzDecodeHistory; the codec server's is in codec/codecserver). Its
// seed corpus in testdata/fuzz/ holds real encrypted histories (the
// fixtures, under the fake KMS's keys) and edge cases; rewrite it with
// -update-seeds. `go test` replays them, `go test -fuzz` explores from
// them.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpora in testdata/fuzz/ from the fixtures and edge cases")

// allocatedBy returns how many heap bytes f allocates.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// writeSeeds replaces the seed files of a fuzz target, those named
// seed-*, with seeds; other files, such as crashers kept as regression
// tests, stay.
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

func readFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fixtures", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// historySeeds are FuzzDecodeHistory's seeds: JSON documents.
func historySeeds(t testing.TB) map[string][]any {
	t.Helper()
	return map[string][]any{
		"fixture-history":       {readFixture(t, "history.json")},
		"fixture-history-plain": {readFixture(t, "history.plain.json")},
		"fixture-input":         {readFixture(t, "input.json")},
		"event-with-time":       {[]byte(`{"events":[{"eventId":"1","eventTime":"2025-01-02T03:04:05Z","attrs":{"input":{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"IngiCg=="}]}}}]}`)},
		"payload-lookalikes":    {[]byte(`{"a":{"metadata":{"owner":"b3Bz"},"data":"Yg=="},"b":{"metadata":"encoding"},"c":{"metadata":{"encoding":"YQ=="},"name":"x","inner":{"metadata":{"encoding":"YQ=="}}}}`)},
		"not-base64":            {[]byte(`{"metadata":{"encoding":"not base64!"}}`)},
		"encrypted-no-format":   {[]byte(`[{"metadata":{"encoding":"YmluYXJ5L2VuY3J5cHRlZA=="},"data":"AAAA"}]`)},
		"numbers-and-escapes":   {[]byte(`{"z":1.50,"a":[-0,12345678901234567890,true,null,"<tag> & \"q\" \u00e9 \ud83d\ude00"],"empty":{},"none":[]}`)},
		"duplicate-keys":        {[]byte(`{"metadata":{"encoding":"YQ=="},"metadata":{"encoding":"Yg=="}}`)},
		"deep":                  {[]byte(strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth))},
		"too-deep":              {[]byte(strings.Repeat("[", maxDepth+2) + strings.Repeat("]", maxDepth+2))},
		"two-values":            {[]byte(`{} {}`)},
		"truncated":             {[]byte(`{"events": [`)},
	}
}

// FuzzDecodeHistory gives the history decoder of `kmscodec decode`
// arbitrary input and checks that:
//   - it never panics, and allocates in proportion to the input only;
//   - valid JSON nested no deeper than the limit is read, anything else
//     refused with errNotJSON;
//   - the output is valid JSON, with the same payload places, and
//     everything outside the payloads exactly as read;
//   - KMS is not asked about a document whose payloads all fail before
//     KMS (unparsable, malformed, or under a key not allowed), and at
//     most once per distinct wrapped key otherwise;
//   - each failure is counted, and the number of payloads is the number
//     found.
func FuzzDecodeHistory(f *testing.F) {
	if *updateSeeds {
		writeSeeds(f, "FuzzDecodeHistory", historySeeds(f))
	}
	fake := newFakeKMS(oldKeyARN, newKeyARN)

	f.Fuzz(func(t *testing.T, input []byte) {
		var doc any
		var err error
		allocated := allocatedBy(func() { doc, err = parseDocument(bytes.NewReader(input)) })
		depth, valid := jsonDepth(input)
		switch {
		case err != nil && !errors.Is(err, errNotJSON):
			t.Fatalf("parse error %v is not errNotJSON", err)
		case err != nil && valid && depth <= maxDepth+1:
			t.Fatalf("valid JSON nested %d deep refused: %v", depth, err)
		case err == nil && !valid:
			t.Fatal("input that is not JSON was read")
		case err == nil && depth > maxDepth+1:
			t.Fatalf("JSON nested %d deep was read, over the limit", depth)
		case err != nil:
			return
		}
		untouched, err := parseDocument(bytes.NewReader(input))
		if err != nil {
			t.Fatal(err)
		}

		kms := &kmstest.Counter{API: fake}
		c, err := codec.New(codec.Options{KMS: kms, DecryptKeyIDs: []string{oldKeyARN, newKeyARN}, DisableEncryption: true, DecryptCacheSize: 64})
		if err != nil {
			t.Fatal(err)
		}
		sites := findPayloads(doc)
		mustAsk, wrappedKeys := historyShape(sites)
		var (
			failed, total int
			decodeErr     error
			out           []byte
			marshalErr    error
			warnings      bytes.Buffer
		)
		allocated += allocatedBy(func() {
			failed, total, decodeErr = decodeDocument(context.Background(), c, doc, true, &warnings)
			out, marshalErr = marshalDocument(doc)
		})
		if bound := 1<<20 + 64*uint64(len(input)); allocated > bound {
			t.Fatalf("a %d-byte document allocated %d bytes, over the bound of %d", len(input), allocated, bound)
		}
		if decodeErr != nil || marshalErr != nil {
			t.Fatalf("decode: %v; marshal: %v", decodeErr, marshalErr)
		}
		if total != len(sites) || failed > total || strings.Count(warnings.String(), "(left as it was)\n") != failed {
			t.Fatalf("%d of %d payloads failed, %d found, %d warnings", failed, total, len(sites), strings.Count(warnings.String(), "\n"))
		}
		if !json.Valid(out) {
			t.Fatal("the output is not valid JSON")
		}
		if !mustAsk && kms.Total() != 0 {
			t.Fatalf("%d KMS calls for payloads that all fail before KMS", kms.Total())
		}
		if kms.GenerateDataKeyCalls.Load() != 0 || kms.DecryptCalls.Load() > int64(wrappedKeys) {
			t.Fatalf("%d GenerateDataKey and %d Decrypt calls for %d distinct wrapped keys", kms.GenerateDataKeyCalls.Load(), kms.DecryptCalls.Load(), wrappedKeys)
		}

		// Read back, the output has a payload where the input had one,
		// and nothing else differs.
		reread, err := parseDocument(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("the output does not read back: %v", err)
		}
		rereadSites := findPayloads(reread)
		if len(rereadSites) != len(sites) {
			t.Fatalf("%d payloads in the output, %d in the input", len(rereadSites), len(sites))
		}
		blank := func(sites []payloadSite) {
			for _, s := range sites {
				s.obj.members = nil
			}
		}
		blank(rereadSites)
		blank(findPayloads(untouched))
		a, errA := marshalDocument(reread)
		b, errB := marshalDocument(untouched)
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Fatal("the output differs from the input outside its payloads")
		}
	})
}

// historyShape says whether decoding sites may need KMS at all (some
// payload is a well-formed envelope under an allowed key), and how many
// distinct wrapped keys it may ask KMS to unwrap.
func historyShape(sites []payloadSite) (mayAsk bool, wrappedKeys int) {
	seen := map[string]bool{}
	for _, s := range sites {
		p, err := s.toPayload()
		if err != nil {
			continue
		}
		env, err := envelope.Parse(p)
		if err != nil {
			continue
		}
		if _, err := env.EncryptionContext(); err != nil {
			continue
		}
		if env.KeyARN != newKeyARN && env.KeyARN != oldKeyARN {
			continue
		}
		seen[string(env.KeyIdentity())] = true
	}
	return len(seen) > 0, len(seen)
}

// jsonDepth reports whether b is one valid JSON value and, if so, how
// deeply arrays and objects nest in it (a scalar is 0, [] is 1).
func jsonDepth(b []byte) (depth int, valid bool) {
	if !json.Valid(b) {
		return 0, false
	}
	cur, inString, escaped := 0, false, false
	for _, c := range b {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			cur++
			depth = max(depth, cur)
		case c == ']' || c == '}':
			cur--
		}
	}
	return depth, true
}
