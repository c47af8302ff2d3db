package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// maxToolJSONDepth bounds the nesting the JSON re-encoder follows.
const maxToolJSONDepth = 512 // as the schema parser's (nextaction maxJSONDepth)

// pyJSONOptions say how pyJSON writes a value.
type pyJSONOptions struct {
	// indent, when set, writes one member per line (Python's
	// json.dumps(indent=4)); else separators are ", " and ": " (Python's
	// default, the templates' tojson).
	indent string
	// refPrefix, when set, is inserted after the "#" of every "$ref"
	// keyword's value: a schema embedded at that JSON pointer keeps
	// pointing into itself.
	refPrefix string
}

// pyJSON re-encodes the JSON value raw as Python's json.dumps with
// ensure_ascii=False writes it (the chat templates render tools and
// arguments with tojson): key order kept, strings re-escaped the way
// Python does, numbers as written. One value and nothing after it.
func pyJSON(raw []byte, o pyJSONOptions) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	w := jsonWriter{dec: dec, o: o, out: make([]byte, 0, len(raw)+len(raw)/4)}
	if err := w.value(0, "", false, false); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return w.out, nil
}

type jsonWriter struct {
	dec *json.Decoder
	o   pyJSONOptions
	out []byte
}

// schemaNameMaps are the schema keywords whose members are names (of
// properties, definitions), not keywords.
var schemaNameMaps = map[string]bool{"properties": true, "$defs": true, "definitions": true, "patternProperties": true, "dependentSchemas": true}

// schemaLiterals are the keywords whose values are data, not schemas.
var schemaLiterals = map[string]bool{"const": true, "enum": true, "default": true, "examples": true}

// value writes the next value; key is the member name it is the value
// of, names that its members are names, literal that it is data.
func (w *jsonWriter) value(depth int, key string, names, literal bool) error {
	if depth > maxToolJSONDepth {
		return fmt.Errorf("JSON nested more than %d levels deep", maxToolJSONDepth)
	}
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return w.object(depth, names, literal)
		case '[':
			return w.array(depth, key, literal)
		}
		return fmt.Errorf("unexpected %q", t)
	case string:
		if key == "$ref" && !literal && w.o.refPrefix != "" && strings.HasPrefix(t, "#") {
			t = "#" + w.o.refPrefix + t[1:]
		}
		w.out = appendPyString(w.out, t)
	case json.Number:
		w.out = append(w.out, t...)
	case bool:
		if t {
			w.out = append(w.out, "true"...)
		} else {
			w.out = append(w.out, "false"...)
		}
	case nil:
		w.out = append(w.out, "null"...)
	}
	return nil
}

func (w *jsonWriter) object(depth int, names, literal bool) error {
	w.out = append(w.out, '{')
	n := 0
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		k, _ := tok.(string)
		w.sep(n, depth+1)
		w.out = appendPyString(w.out, k)
		w.out = append(w.out, ": "...)
		childNames, childLiteral := false, literal
		if !names && !literal {
			childNames, childLiteral = schemaNameMaps[k], schemaLiterals[k]
		}
		key := k
		if names {
			key = "" // a property named $ref is not a reference
		}
		if err := w.value(depth+1, key, childNames, childLiteral); err != nil {
			return err
		}
		n++
	}
	if _, err := w.dec.Token(); err != nil {
		return err
	}
	w.close(n, depth, '}')
	return nil
}

func (w *jsonWriter) array(depth int, key string, literal bool) error {
	w.out = append(w.out, '[')
	n := 0
	for w.dec.More() {
		w.sep(n, depth+1)
		// Items of anyOf, items, prefixItems are schemas; of enum,
		// examples, required data.
		if err := w.value(depth+1, "", false, literal || key == "required"); err != nil {
			return err
		}
		n++
	}
	if _, err := w.dec.Token(); err != nil {
		return err
	}
	w.close(n, depth, ']')
	return nil
}

// sep writes what comes before member n of a container at depth.
func (w *jsonWriter) sep(n, depth int) {
	if w.o.indent == "" {
		if n > 0 {
			w.out = append(w.out, ", "...)
		}
		return
	}
	if n > 0 {
		w.out = append(w.out, ',')
	}
	w.out = append(w.out, '\n')
	w.out = append(w.out, strings.Repeat(w.o.indent, depth)...)
}

func (w *jsonWriter) close(n, depth int, c byte) {
	if w.o.indent != "" && n > 0 {
		w.out = append(w.out, '\n')
		w.out = append(w.out, strings.Repeat(w.o.indent, depth)...)
	}
	w.out = append(w.out, c)
}

// appendPyString appends s as Python's json.dumps(ensure_ascii=False)
// quotes it.
func appendPyString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
			continue
		}
		switch c {
		case '"':
			b = append(b, `\"`...)
		case '\\':
			b = append(b, `\\`...)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		case '\b':
			b = append(b, `\b`...)
		case '\f':
			b = append(b, `\f`...)
		default:
			if c < 0x20 {
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			} else {
				b = append(b, c)
			}
		}
		i++
	}
	return append(b, '"')
}

// CheckArguments checks a call's arguments as a request gives them: JSON
// text of one object, nested at most maxToolJSONDepth levels.
func CheckArguments(args string) error {
	if t := strings.TrimSpace(args); t == "" || t[0] != '{' {
		return errors.New("not a JSON object")
	}
	if _, err := pyJSON([]byte(args), pyJSONOptions{}); err != nil {
		return err
	}
	return nil
}
