package bench_test

import (
	"bytes"
	"context"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nextact/nextact/bench"
	"github.com/nextact/nextact/internal/reportcheck"
)

var update = flag.Bool("update", false, "rewrite testdata/report.schema from the Report type")

// schemaLines derives report.json's schema from the Report type.
func schemaLines() []string { return reportcheck.Lines(reflect.TypeFor[bench.Report]()) }

const schemaFile = "testdata/report.schema"

// The Report type matches the golden schema: a field added, removed,
// renamed or retyped shows here (and then needs docs/BENCH.md, and a new
// schema_version unless it only adds).
func TestReportSchemaGolden(t *testing.T) {
	t.Parallel()
	reportcheck.CheckGolden(t, schemaLines(), schemaFile, *update)
	if bench.SchemaVersion != 1 {
		t.Errorf("SchemaVersion = %d; update this test and docs/BENCH.md together", bench.SchemaVersion)
	}
}

// Every key of the schema is documented in docs/BENCH.md.
func TestReportSchemaDocumented(t *testing.T) {
	t.Parallel()
	reportcheck.CheckDocumented(t, reportcheck.Keys(schemaLines()), "../docs/BENCH.md")
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
	v := reportcheck.CheckConforms(t, filepath.Join(dir, "report.json"), schemaFile)
	if v["schema_version"] != 1.0 || len(v["runs"].([]any)) != 2 || v["comparison"] == nil {
		t.Errorf("report: version %v, %d runs, comparison %v", v["schema_version"], len(v["runs"].([]any)), v["comparison"] != nil)
	}
}

func TestReportHTMLSelfContained(t *testing.T) {
	t.Parallel()
	dir := writeReport(t)
	page, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	tags := reportcheck.CheckSelfContained(t, page)
	svgs, tables := tags["svg"], tags["table"]
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
	reportcheck.CheckSelfContained(t, page)
	if !bytes.Contains(page, []byte("10.0.0.1:8080")) {
		t.Error("the target's host is not shown")
	}
}
