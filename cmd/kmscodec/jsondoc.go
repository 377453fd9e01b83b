package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// A JSON document is read into these types so that it can be written back
// as it was, object keys in their order, with only payloads changed:
//
//	*object      a JSON object, keys in document order
//	[]any        a JSON array
//	json.Number  a number, exactly as written
//	string, bool, nil
//
// A generic walk over such a tree finds payloads in any document: a
// {"payloads": [...]} body, a History, a single event, a workflow
// description, without knowing their schemas.
type object struct {
	members []member
}

type member struct {
	key   string
	value any
}

// get returns the value of key, if present.
func (o *object) get(key string) (any, bool) {
	for _, m := range o.members {
		if m.key == key {
			return m.value, true
		}
	}
	return nil, false
}

// maxDepth bounds nesting, so a hostile document cannot exhaust the stack.
const maxDepth = 512

// errNotJSON wraps every parse failure.
var errNotJSON = errors.New("input is not valid JSON")

// parseDocument reads one JSON value from r, which must hold nothing else.
func parseDocument(r io.Reader) (any, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	v, err := parseValue(dec, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotJSON, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: more than one JSON value", errNotJSON)
	}
	return v, nil
}

func parseValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := &object{}
			for dec.More() {
				keyTok, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, _ := keyTok.(string)
				v, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				o.members = append(o.members, member{key, v})
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, err
			}
			return o, nil
		case '[':
			a := []any{}
			for dec.More() {
				v, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, err
			}
			return a, nil
		}
		return nil, fmt.Errorf("unexpected %q", t)
	default:
		return t, nil
	}
}

// maxIndentDepth is the deepest level marshalDocument indents: arrays
// and objects nested deeper are written on one line. Indenting every
// level would make the output grow with the square of the nesting depth,
// so that a hostile document of a few kilobytes, nested hundreds of
// levels deep, would take megabytes to write back. Temporal histories
// nest about ten levels deep.
const maxIndentDepth = 16

// marshalDocument returns v as indented JSON followed by a newline.
func marshalDocument(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := writeValue(&buf, v, 0, "  "); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

func writeValue(buf *bytes.Buffer, v any, depth int, indent string) error {
	if depth >= maxIndentDepth {
		indent = ""
	}
	newline := func(d int) {
		if indent == "" {
			return
		}
		buf.WriteByte('\n')
		for range d {
			buf.WriteString(indent)
		}
	}
	colon := ": "
	if indent == "" {
		colon = ":"
	}
	switch t := v.(type) {
	case *object:
		if len(t.members) == 0 {
			buf.WriteString("{}")
			return nil
		}
		buf.WriteByte('{')
		for i, m := range t.members {
			if i > 0 {
				buf.WriteByte(',')
			}
			newline(depth + 1)
			writeString(buf, m.key)
			buf.WriteString(colon)
			if err := writeValue(buf, m.value, depth+1, indent); err != nil {
				return err
			}
		}
		newline(depth)
		buf.WriteByte('}')
	case []any:
		if len(t) == 0 {
			buf.WriteString("[]")
			return nil
		}
		buf.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				buf.WriteByte(',')
			}
			newline(depth + 1)
			if err := writeValue(buf, e, depth+1, indent); err != nil {
				return err
			}
		}
		newline(depth)
		buf.WriteByte(']')
	case string:
		writeString(buf, t)
	case json.Number:
		buf.WriteString(t.String())
	case bool:
		buf.WriteString(strconv.FormatBool(t))
	case nil:
		buf.WriteString("null")
	default:
		return fmt.Errorf("internal error: unexpected JSON value %T", v)
	}
	return nil
}

// writeString quotes s as JSON without escaping <, > and &, which would
// change text that was not escaped in the input.
func writeString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	buf.Truncate(buf.Len() - 1) // Encode's newline
}

// payloadSite is a payload found in a document: the object to replace,
// where it is, and the time of the history event it belongs to, if any.
type payloadSite struct {
	obj       *object
	loc       *location
	eventTime string
}

// path is where the payload is, for messages.
func (s payloadSite) path() string { return s.loc.String() }

// location is where a value is in a document: a member key or an array
// index below the location of its parent (nil for the document itself).
// Sites share their ancestors' locations, so finding the payloads costs
// one small node per array or object, not a copy of every ancestor's key
// per payload; the path is rendered only for a message.
type location struct {
	parent *location
	key    string // the member's key, if the value is an object member
	index  int    // the value's index, if it is an array element
	inList bool   // whether index, not key, says where the value is
}

// Rendered paths keep the last maxPathSegments steps, and each key's
// first maxPathKeyBytes bytes, so that a message about a payload nested
// hundreds of levels deep under long keys stays short.
const (
	maxPathSegments = 16
	maxPathKeyBytes = 64
)

// String renders l as a JSONPath-like location: $.events[0].attrs.
// Steps left out are shown as "…", as is the rest of a long key.
func (l *location) String() string {
	var steps []*location
	for s := l; s != nil; s = s.parent {
		steps = append(steps, s)
	}
	var b strings.Builder
	b.WriteString("$")
	if len(steps) > maxPathSegments {
		b.WriteString("…")
		steps = steps[:maxPathSegments]
	}
	for i := len(steps) - 1; i >= 0; i-- {
		s := steps[i]
		if s.inList {
			b.WriteString("[" + strconv.Itoa(s.index) + "]")
			continue
		}
		b.WriteByte('.')
		if len(s.key) > maxPathKeyBytes {
			b.WriteString(strings.ToValidUTF8(s.key[:maxPathKeyBytes], ""))
			b.WriteString("…")
		} else {
			b.WriteString(s.key)
		}
	}
	return b.String()
}

// payloadKeys are the fields of temporal.api.common.v1.Payload in JSON.
var payloadKeys = map[string]bool{"metadata": true, "data": true, "externalPayloads": true, "external_payloads": true}

// isPayload reports whether o looks like a Payload: it has a metadata
// object with an encoding, and no field a Payload does not have.
func isPayload(o *object) bool {
	md, ok := o.get("metadata")
	if !ok {
		return false
	}
	mdObj, ok := md.(*object)
	if !ok {
		return false
	}
	if _, ok := mdObj.get("encoding"); !ok {
		return false
	}
	for _, m := range o.members {
		if !payloadKeys[m.key] {
			return false
		}
	}
	return true
}

// findPayloads returns every payload in v, in document order.
func findPayloads(v any) []payloadSite {
	var sites []payloadSite
	var walk func(v any, loc *location, eventTime string)
	walk = func(v any, loc *location, eventTime string) {
		switch t := v.(type) {
		case *object:
			if isPayload(t) {
				sites = append(sites, payloadSite{obj: t, loc: loc, eventTime: eventTime})
				return
			}
			// A history event has an eventId and an eventTime: payloads
			// below it were written at that time.
			if et, ok := t.get("eventTime"); ok {
				if s, ok := et.(string); ok {
					if _, isEvent := t.get("eventId"); isEvent {
						eventTime = s
					}
				}
			}
			for _, m := range t.members {
				if isContainer(m.value) {
					walk(m.value, &location{parent: loc, key: m.key}, eventTime)
				}
			}
		case []any:
			for i, e := range t {
				if isContainer(e) {
					walk(e, &location{parent: loc, index: i, inList: true}, eventTime)
				}
			}
		}
	}
	walk(v, nil, "")
	return sites
}

// isContainer reports whether v is an object or an array: only they can
// hold payloads.
func isContainer(v any) bool {
	switch v.(type) {
	case *object, []any:
		return true
	}
	return false
}

// toPayload reads a payload object as the protobuf message.
func (s payloadSite) toPayload() (*commonpb.Payload, error) {
	var buf bytes.Buffer
	if err := writeValue(&buf, s.obj, 0, ""); err != nil {
		return nil, err
	}
	p := &commonpb.Payload{}
	if err := protojson.Unmarshal(buf.Bytes(), p); err != nil {
		return nil, err
	}
	return p, nil
}

// replace puts p where the payload object was.
func (s payloadSite) replace(p *commonpb.Payload) error {
	b, err := protojson.Marshal(p)
	if err != nil {
		return err
	}
	v, err := parseDocument(bytes.NewReader(b))
	if err != nil {
		return err
	}
	o, ok := v.(*object)
	if !ok {
		return errors.New("internal error: payload did not marshal to an object")
	}
	s.obj.members = o.members
	return nil
}
