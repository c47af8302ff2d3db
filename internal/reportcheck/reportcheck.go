// Package reportcheck holds the checks the bench and eval tests make of
// their reports: a golden, line-per-field schema of report.json derived
// from its Go type, the conformance of decoded JSON to it, its keys named
// in the docs, and a report.html that references nothing outside itself.
// It imports testing: only tests import it.
//
// A schema line is "path type": the path joins JSON keys with "." and
// marks array items with "[]" and the values of a map of objects with
// "{}"; the type is object, array, map<T>, string,
// integer, number or boolean, with "|null" when the field may be null (a
// pointer).
package reportcheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// Lines returns the schema of t, one line per field, in field order.
func Lines(t reflect.Type) []string {
	var out []string
	var walk func(t reflect.Type, path string, nullable bool)
	walk = func(t reflect.Type, path string, nullable bool) {
		if t.Kind() == reflect.Pointer {
			walk(t.Elem(), path, true)
			return
		}
		typ := kindName(t)
		if nullable {
			typ += "|null"
		}
		if path != "" {
			out = append(out, path+" "+typ)
		}
		switch t.Kind() {
		case reflect.Struct:
			for f := range t.Fields() {
				key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				child := key
				if path != "" {
					child = path + "." + key
				}
				walk(f.Type, child, false)
			}
		case reflect.Slice, reflect.Array:
			walk(t.Elem(), path+"[]", false)
		case reflect.Map:
			if t.Elem().Kind() == reflect.Struct {
				walk(t.Elem(), path+"{}", false)
			}
		}
	}
	walk(t, "", false)
	return out
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map:
		return "map<" + kindName(t.Elem()) + ">"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Float64:
		return "number"
	case reflect.Int, reflect.Int64, reflect.Uint64:
		return "integer"
	}
	panic("no JSON kind for " + t.String())
}

// Keys returns the last key of each line's path (without "[]"): the
// names a document must explain.
func Keys(lines []string) []string {
	var out []string
	for _, line := range lines {
		path, _, _ := strings.Cut(line, " ")
		key := path[strings.LastIndexAny(path, ".")+1:]
		out = append(out, strings.TrimSuffix(strings.TrimSuffix(key, "{}"), "[]"))
	}
	return out
}

// LineDiff lists the lines only in want (-) and only in got (+).
func LineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range w {
		if !slices.Contains(g, l) {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}

// Load reads a golden schema file as path -> type.
func Load(file string) (map[string]string, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	s := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		p, typ, _ := strings.Cut(line, " ")
		s[p] = typ
	}
	return s, nil
}

// Conform checks a decoded JSON value against the schema at path ("" for
// the document): every key of an object present, none unknown, each
// value of its type.
func Conform(schema map[string]string, path string, v any) error {
	typ, ok := schema[path]
	if path == "" {
		typ, ok = "object", true
	}
	if !ok {
		return fmt.Errorf("%s: not in the schema", path)
	}
	base, nullable := strings.CutSuffix(typ, "|null")
	if v == nil {
		if !nullable {
			return fmt.Errorf("%s: null, schema says %s", path, typ)
		}
		return nil
	}
	switch {
	case base == "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an object", path, v)
		}
		prefix := path + "."
		if path == "" {
			prefix = ""
		}
		for p := range schema {
			if rest, ok := strings.CutPrefix(p, prefix); ok && !strings.ContainsAny(rest, ".[{") {
				if _, present := obj[rest]; !present {
					return fmt.Errorf("%s: missing key %s", path, rest)
				}
			}
		}
		for k, x := range obj {
			if err := Conform(schema, prefix+k, x); err != nil {
				return err
			}
		}
	case base == "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an array", path, v)
		}
		for _, x := range arr {
			if err := Conform(schema, path+"[]", x); err != nil {
				return err
			}
		}
	case strings.HasPrefix(base, "map<"):
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %T, want a map", path, v)
		}
		elem := strings.TrimSuffix(strings.TrimPrefix(base, "map<"), ">")
		for k, x := range obj {
			if err := conformMapValue(schema, elem, path, k, x); err != nil {
				return err
			}
		}
	default:
		if err := scalar(base, v); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// conformMapValue checks one value of a map: a scalar, or a map of
// scalars (map<map<integer>>).
func conformMapValue(schema map[string]string, elem, path, k string, x any) error {
	if inner, ok := strings.CutPrefix(elem, "map<"); ok {
		obj, ok := x.(map[string]any)
		if !ok {
			return fmt.Errorf("%s[%s]: %T, want a map", path, k, x)
		}
		for k2, y := range obj {
			if err := conformMapValue(schema, strings.TrimSuffix(inner, ">"), path+"["+k+"]", k2, y); err != nil {
				return err
			}
		}
		return nil
	}
	if elem == "object" {
		return Conform(schema, path+"{}", x)
	}
	if err := scalar(elem, x); err != nil {
		return fmt.Errorf("%s[%s]: %w", path, k, err)
	}
	return nil
}

func scalar(typ string, v any) error {
	ok := false
	switch typ {
	case "string":
		_, ok = v.(string)
	case "boolean":
		_, ok = v.(bool)
	case "number":
		_, ok = v.(float64)
	case "integer":
		f, isNum := v.(float64)
		ok = isNum && f == math.Trunc(f)
	}
	if !ok {
		return fmt.Errorf("%v (%T) is not a JSON %s", v, v, typ)
	}
	return nil
}

// CheckGolden fails tb when lines differ from the golden file; with
// update it rewrites the file first.
func CheckGolden(tb testing.TB, lines []string, file string, update bool) {
	tb.Helper()
	got := strings.Join(lines, "\n") + "\n"
	if update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		tb.Fatal(err)
	}
	if got != string(want) {
		tb.Errorf("the report type does not match %s (rerun the test with -update to accept):\n%s", file, LineDiff(string(want), got))
	}
}

// CheckDocumented fails tb for each key that doc does not name in
// backticks.
func CheckDocumented(tb testing.TB, keys []string, doc string) {
	tb.Helper()
	text, err := os.ReadFile(doc)
	if err != nil {
		tb.Fatal(err)
	}
	for _, key := range keys {
		if !strings.Contains(string(text), "`"+key+"`") {
			tb.Errorf("%s does not document `%s`", doc, key)
		}
	}
}

// externalRef matches what would make a page load something: a URL, a
// script, a stylesheet or image link, a frame, a CSS url().
var externalRef = regexp.MustCompile(`(?i)(https?:|//[a-z0-9]|<script|<link|<iframe|<img|src=|href=|url\()`)

// CheckSelfContained fails tb when page references anything outside
// itself or does not parse, and returns how many elements of each tag it
// has.
func CheckSelfContained(tb testing.TB, page []byte) map[string]int {
	tb.Helper()
	if m := externalRef.Find(page); m != nil {
		tb.Fatalf("report.html references something outside itself: %q", m)
	}
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		tb.Fatal(err)
	}
	tags := map[string]int{}
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode {
			tags[n.Data]++
		}
	}
	return tags
}

// CheckConforms reads the JSON file at path, fails tb unless it conforms
// to the golden schema file, and returns it decoded.
func CheckConforms(tb testing.TB, path, schemaFile string) map[string]any {
	tb.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		tb.Fatal(err)
	}
	schema, err := Load(schemaFile)
	if err != nil {
		tb.Fatal(err)
	}
	if err := Conform(schema, "", v); err != nil {
		tb.Fatal(err)
	}
	if Conform(schema, "", map[string]any{"schema_version": 1.5}) == nil {
		tb.Fatal("the checker accepted a report with missing keys and a fractional integer")
	}
	return v
}
