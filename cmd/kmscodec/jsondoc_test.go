package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestDocumentRoundTrip: a document written back is the document read,
// key order, numbers and characters included.
func TestDocumentRoundTrip(t *testing.T) {
	const doc = `{
  "z": 1,
  "a": [
    1.50,
    -0,
    12345678901234567890,
    true,
    null,
    "<tag> & \"quote\" \u00e9"
  ],
  "empty": {},
  "none": []
}
`
	v, err := parseDocument(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	got, err := marshalDocument(v)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(doc, `\u00e9`, "é", 1) // escapes are not kept, what they mean is
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestDeeplyNestedDocumentsAreWrittenInLinearSpace: below
// maxIndentDepth levels a document is written on one line, so what is
// written back grows with the input, not with the square of its depth.
func TestDeeplyNestedDocumentsAreWrittenInLinearSpace(t *testing.T) {
	deep := strings.Repeat(`{"a":[`, maxDepth/2) + strings.Repeat("]}", maxDepth/2)
	v, err := parseDocument(strings.NewReader(deep))
	if err != nil {
		t.Fatal(err)
	}
	got, err := marshalDocument(v)
	if err != nil {
		t.Fatal(err)
	}
	// Indentation of 2 spaces per level up to maxIndentDepth, for each
	// of the opening and closing lines above it.
	if bound := len(deep) + 2*maxIndentDepth*(2*maxIndentDepth+2); len(got) > bound {
		t.Errorf("a %d-byte document nested %d deep was written in %d bytes, over %d", len(deep), maxDepth, len(got), bound)
	}
	back, err := parseDocument(bytes.NewReader(got))
	if err != nil {
		t.Fatalf("the output does not read back: %v", err)
	}
	again, err := marshalDocument(back)
	if err != nil || !bytes.Equal(again, got) {
		t.Errorf("writing the output back changed it: %v", err)
	}

	// Just below the limit, the innermost levels share a line.
	shallow := strings.Repeat("[", maxIndentDepth) + `{"k": [1, 2]}` + strings.Repeat("]", maxIndentDepth)
	v, err = parseDocument(strings.NewReader(shallow))
	if err != nil {
		t.Fatal(err)
	}
	got, err = marshalDocument(v)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat(" ", 2*maxIndentDepth) + `{"k":[1,2]}` + "\n"; !strings.Contains(string(got), want) {
		t.Errorf("output\n%s\ndoes not hold the line %q", got, want)
	}
}

// TestParseDocumentRejects: what is not one JSON value is an error, never
// a panic.
func TestParseDocumentRejects(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty input", ""},
		{"truncated object", `{"events": [`},
		{"two values", `{} {}`},
		{"trailing garbage", `{"a": 1} x`},
		{"a bare word", `payloads`},
		{"nesting beyond the limit", strings.Repeat("[", maxDepth+2) + strings.Repeat("]", maxDepth+2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseDocument(strings.NewReader(tt.in)); !errors.Is(err, errNotJSON) {
				t.Errorf("error %v, want errNotJSON", err)
			}
		})
	}
}

// TestFindPayloads: which objects are payloads, and where they are.
func TestFindPayloads(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		paths []string
		times []string
	}{
		{
			name:  "a codec request body",
			doc:   `{"payloads": [{"metadata": {"encoding": "YQ=="}, "data": "Yg=="}, {"metadata": {"encoding": "YQ=="}}]}`,
			paths: []string{"$.payloads[0]", "$.payloads[1]"},
		},
		{
			name:  "payloads in a history carry their event's time",
			doc:   `{"events": [{"eventId": "1", "eventTime": "2025-01-02T03:04:05Z", "attrs": {"input": {"payloads": [{"metadata": {"encoding": "YQ=="}}]}}}]}`,
			paths: []string{"$.events[0].attrs.input.payloads[0]"},
			times: []string{"2025-01-02T03:04:05Z"},
		},
		{
			name:  "a memo field is a payload",
			doc:   `{"memo": {"fields": {"note": {"metadata": {"encoding": "YQ=="}, "data": "Yg=="}}}}`,
			paths: []string{"$.memo.fields.note"},
		},
		{
			name: "metadata without an encoding is not a payload",
			doc:  `{"metadata": {"owner": "b3Bz"}, "data": "Yg=="}`,
		},
		{
			name: "an object with fields a payload lacks is not one",
			doc:  `{"metadata": {"encoding": "YQ=="}, "name": "x"}`,
		},
		{
			name: "metadata that is not an object is not a payload",
			doc:  `{"metadata": "encoding"}`,
		},
		{
			name:  "a payload inside a non-payload object is found",
			doc:   `{"metadata": {"encoding": "YQ=="}, "name": "x", "inner": {"metadata": {"encoding": "YQ=="}}}`,
			paths: []string{"$.inner"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := parseDocument(strings.NewReader(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			sites := findPayloads(v)
			var paths, times []string
			for _, s := range sites {
				paths = append(paths, s.path())
				if s.eventTime != "" {
					times = append(times, s.eventTime)
				}
			}
			if strings.Join(paths, " ") != strings.Join(tt.paths, " ") {
				t.Errorf("paths %q, want %q", paths, tt.paths)
			}
			if strings.Join(times, " ") != strings.Join(tt.times, " ") {
				t.Errorf("event times %q, want %q", times, tt.times)
			}
		})
	}
}

// TestPayloadSiteRejectsInvalidBase64: a payload-shaped object whose
// fields are not base64 is reported, not decoded into garbage.
func TestPayloadSiteRejectsInvalidBase64(t *testing.T) {
	v, err := parseDocument(strings.NewReader(`{"metadata": {"encoding": "not base64!"}}`))
	if err != nil {
		t.Fatal(err)
	}
	sites := findPayloads(v)
	if len(sites) != 1 {
		t.Fatalf("%d payloads found", len(sites))
	}
	if _, err := sites[0].toPayload(); err == nil {
		t.Error("invalid base64 was accepted")
	}
}

// TestPathsOfDeepPayloadsAreShortened: the path in a message about a
// payload nested deep under long keys keeps its last steps and the start
// of each key, so that messages stay short whatever the document.
func TestPathsOfDeepPayloadsAreShortened(t *testing.T) {
	long := strings.Repeat("k", 1000)
	doc := strings.Repeat(`{"`+long+`":[`, 20) + `{"metadata": {"encoding": "YQ=="}}` + strings.Repeat("]}", 20)
	v, err := parseDocument(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	sites := findPayloads(v)
	if len(sites) != 1 {
		t.Fatalf("%d payloads found", len(sites))
	}
	step := "." + long[:maxPathKeyBytes] + "…[0]"
	if want := "$…" + strings.Repeat(step, maxPathSegments/2); sites[0].path() != want {
		t.Errorf("path %q, want %q", sites[0].path(), want)
	}
}
