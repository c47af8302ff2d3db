package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/nextact/nextact/bench"
)

var update = flag.Bool("update", false, "rewrite testdata/report.schema from the Report type")

// schemaLines derives report.json's schema from the Report type: one line
// "path type" per field, where a path joins JSON keys with "." and marks
// array items with "[]", and a type is object, array, map<T>, string,
// integer, number or boolean, with "|null" when the field may be null.
func schemaLines() []string {
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
		case reflect.Slice:
			walk(t.Elem(), path+"[]", false)
		}
	}
	walk(reflect.TypeFor[bench.Report](), "", false)
	return out
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct:
		return "object"
	case reflect.Slice:
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

const schemaFile = "testdata/report.schema"

// The Report type matches the golden schema: a field added, removed,
// renamed or retyped shows here (and then needs docs/BENCH.md, and a new
// schema_version unless it only adds).
func TestReportSchemaGolden(t *testing.T) {
	t.Parallel()
	got := strings.Join(schemaLines(), "\n") + "\n"
	if *update {
		if err := os.WriteFile(schemaFile, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("the Report type does not match %s (go test ./bench -update to accept):\n%s", schemaFile, lineDiff(string(want), got))
	}
	if bench.SchemaVersion != 1 {
		t.Errorf("SchemaVersion = %d; update this test and docs/BENCH.md together", bench.SchemaVersion)
	}
}

func lineDiff(want, got string) string {
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

// Every key of the schema is documented in docs/BENCH.md.
func TestReportSchemaDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/BENCH.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range schemaLines() {
		path, _, _ := strings.Cut(line, " ")
		key := path[strings.LastIndexAny(path, ".")+1:]
		key = strings.TrimSuffix(key, "[]")
		if !bytes.Contains(doc, []byte("`"+key+"`")) {
			t.Errorf("docs/BENCH.md does not document `%s` (%s)", key, path)
		}
	}
}

// loadSchema reads the golden schema as path -> type.
func loadSchema(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	s := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		p, typ, _ := strings.Cut(line, " ")
		s[p] = typ
	}
	return s
}

// conform checks a decoded JSON value against the schema at path.
func conform(schema map[string]string, path string, v any) error {
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
			if rest, ok := strings.CutPrefix(p, prefix); ok && !strings.ContainsAny(rest, ".[") {
				if _, present := obj[rest]; !present {
					return fmt.Errorf("%s: missing key %s", path, rest)
				}
			}
		}
		for k, x := range obj {
			if err := conform(schema, prefix+k, x); err != nil {
				return err
			}
		}
	case base == "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an array", path, v)
		}
		for _, x := range arr {
			if err := conform(schema, path+"[]", x); err != nil {
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
			if err := scalar(elem, x); err != nil {
				return fmt.Errorf("%s[%s]: %w", path, k, err)
			}
		}
	default:
		if err := scalar(base, v); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
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

// writeReport runs a small compare benchmark against fakes and writes its
// files into a temporary directory.
func writeReport(t *testing.T) string {
	t.Helper()
	a := newFake(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) { answer(w, body) })
	b := newFake(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		if body["page"] != nil && strings.Contains(body["page"].(string), "Checkout") {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		answer(w, body)
	})
	cfg := benchConfig(a.URL, bench.ModeActions, 4, 4)
	cfg.Compare = bench.Target{URL: b.URL, Mode: bench.ModeActions}
	cfg.SLO = bench.SLO{TTFT: 1e9, Step: 2e9}
	cfg.Out = filepath.Join(t.TempDir(), "out")
	if _, err := bench.Bench(context.Background(), cfg, quiet()); err != nil {
		t.Fatal(err)
	}
	return cfg.Out
}

func TestReportJSONConformsToSchema(t *testing.T) {
	t.Parallel()
	dir := writeReport(t)
	raw, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if err := conform(loadSchema(t), "", v); err != nil {
		t.Fatal(err)
	}
	if v["schema_version"] != 1.0 || len(v["runs"].([]any)) != 2 || v["comparison"] == nil {
		t.Errorf("report: version %v, %d runs, comparison %v", v["schema_version"], len(v["runs"].([]any)), v["comparison"] != nil)
	}
	// The checker rejects what does not conform.
	bad := map[string]any{"schema_version": 1.5}
	if conform(loadSchema(t), "", bad) == nil {
		t.Error("conform accepted a report with missing keys and a fractional integer")
	}
}

var externalRef = regexp.MustCompile(`(?i)(https?:|//[a-z0-9]|<script|<link|<iframe|<img|src=|href=|url\()`)

func TestReportHTMLSelfContained(t *testing.T) {
	t.Parallel()
	dir := writeReport(t)
	page, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if m := externalRef.Find(page); m != nil {
		t.Fatalf("report.html references something outside itself: %q", m)
	}
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	svgs, tables := 0, 0
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode && n.Data == "svg" {
			svgs++
		}
		if n.Type == html.ElementNode && n.Data == "table" {
			tables++
		}
	}
	if svgs != 5 || tables != 2 {
		t.Errorf("report.html has %d charts and %d tables, want 5 and 2", svgs, tables)
	}
	for _, want := range []string{"over time", "distribution (CDF)", "steps per second", "Comparison (b / a)", "e2e_p99_ms", "<circle", "<polyline"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("report.html lacks %q", want)
		}
	}
}

// A model id with a URL in it does not put the URL into report.html.
func TestReportHTMLEscapesURLs(t *testing.T) {
	t.Parallel()
	rep := &bench.Report{SchemaVersion: 1, Runs: []bench.RunReport{{Label: "a", URL: "http://10.0.0.1:8080", Model: "https://example.com/m<script>"}}}
	page, err := rep.HTML()
	if err != nil {
		t.Fatal(err)
	}
	if m := externalRef.Find(page); m != nil {
		t.Fatalf("report.html has %q", m)
	}
	if !bytes.Contains(page, []byte("10.0.0.1:8080")) {
		t.Error("the target's host is not shown")
	}
}
