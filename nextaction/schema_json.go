package nextaction

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// jv is a JSON value that keeps the order of object members, so that a
// schema's properties are written in the order it declares them.
type jv struct {
	kind byte // one of the jv* kinds
	// str is a string's value or a number's text.
	str string
	// keys and vals are an object's members in order, or an array's
	// elements (vals only).
	keys []string
	vals []*jv
}

// Kinds of jv.
const (
	jvNull byte = iota
	jvBool
	jvNumber
	jvString
	jvArray
	jvObject
)

// isBool reports whether v is the boolean b.
func (v *jv) isBool(b bool) bool {
	return v != nil && v.kind == jvBool && (v.str == "true") == b
}

// get returns an object's member named k, or nil.
func (v *jv) get(k string) *jv {
	if v == nil || v.kind != jvObject {
		return nil
	}
	for i, key := range v.keys {
		if key == k {
			return v.vals[i]
		}
	}
	return nil
}

// has reports whether an object has a member named k.
func (v *jv) has(k string) bool { return v.get(k) != nil }

// typeName is the JSON type of v as JSON Schema names it.
func (v *jv) typeName() string {
	switch v.kind {
	case jvNull:
		return "null"
	case jvBool:
		return "boolean"
	case jvNumber:
		if isIntegerText(v.str) {
			return "integer"
		}
		return "number"
	case jvString:
		return "string"
	case jvArray:
		return "array"
	}
	return "object"
}

// isIntegerText reports whether a JSON number's text is an integer value
// (1, -3, 2.0, 1e3).
func isIntegerText(s string) bool {
	f, err := strconv.ParseFloat(s, 64)
	return err == nil && f == math.Trunc(f)
}

// maxJSONDepth bounds the nesting of a schema document (deeper documents
// are refused before any schema limit applies; MaxDepth is far below it).
const maxJSONDepth = 512

// parseJV parses one JSON document; trailing data is an error, and so is
// an object with a repeated key (a schema's meaning would be ambiguous).
func parseJV(data []byte) (*jv, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := readJV(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the schema")
	}
	return v, nil
}

func readJV(dec *json.Decoder, depth int) (*jv, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case nil:
		return &jv{kind: jvNull}, nil
	case bool:
		return &jv{kind: jvBool, str: strconv.FormatBool(t)}, nil
	case json.Number:
		return &jv{kind: jvNumber, str: t.String()}, nil
	case string:
		return &jv{kind: jvString, str: t}, nil
	case json.Delim:
		if t == '[' {
			v := &jv{kind: jvArray}
			for dec.More() {
				e, err := readJV(dec, depth+1)
				if err != nil {
					return nil, err
				}
				v.vals = append(v.vals, e)
			}
			_, err := dec.Token() // ]
			return v, err
		}
		v := &jv{kind: jvObject}
		var seen map[string]bool
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, _ := kt.(string)
			if len(v.keys) >= 8 && seen == nil {
				seen = make(map[string]bool, 16)
				for _, x := range v.keys {
					seen[x] = true
				}
			}
			if seen != nil && seen[k] || seen == nil && v.get(k) != nil {
				return nil, fmt.Errorf("key %q appears twice in one object", k)
			}
			if seen != nil {
				seen[k] = true
			}
			e, err := readJV(dec, depth+1)
			if err != nil {
				return nil, err
			}
			v.keys, v.vals = append(v.keys, k), append(v.vals, e)
		}
		_, err := dec.Token() // }
		return v, err
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// appendJSON writes v as compact JSON: strings escaped as JSON requires
// (and no more), numbers as written, members in order.
func (v *jv) appendJSON(b []byte) []byte {
	switch v.kind {
	case jvNull:
		return append(b, "null"...)
	case jvBool, jvNumber:
		return append(b, v.str...)
	case jvString:
		return appendJSONString(b, v.str)
	case jvArray:
		b = append(b, '[')
		for i, e := range v.vals {
			if i > 0 {
				b = append(b, ',')
			}
			b = e.appendJSON(b)
		}
		return append(b, ']')
	}
	b = append(b, '{')
	for i, k := range v.keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = v.vals[i].appendJSON(b)
	}
	return append(b, '}')
}

// appendJSONString writes s as a JSON string: '"', '\' and control
// characters escaped, everything else (UTF-8 included) as is. Invalid
// UTF-8 becomes U+FFFD, as encoding/json decodes it.
func appendJSONString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}
