package eval_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/nextact/nextact/eval"
	"github.com/nextact/nextact/internal/reportcheck"
)

const schemaFile = "testdata/report.schema"

func schemaLines() []string { return reportcheck.Lines(reflect.TypeFor[eval.Report]()) }

// The Report type matches the golden schema: a field added, removed,
// renamed or retyped shows here (and then needs docs/EVAL.md, and a new
// schema_version unless it only adds).
func TestReportSchemaGolden(t *testing.T) {
	t.Parallel()
	reportcheck.CheckGolden(t, schemaLines(), schemaFile, *update)
	if eval.SchemaVersion != 1 {
		t.Errorf("SchemaVersion = %d; update this test and docs/EVAL.md together", eval.SchemaVersion)
	}
}

// Every key of the schema, every error category and every column of the
// confusion matrix is documented in docs/EVAL.md.
func TestReportSchemaDocumented(t *testing.T) {
	t.Parallel()
	keys := append(reportcheck.Keys(schemaLines()), eval.ErrorCategories...)
	reportcheck.CheckDocumented(t, append(keys, eval.PredictedTypes...), "../docs/EVAL.md")
}

// writeReport runs a small comparison against two fakes and returns its
// output directory.
func writeReport(t *testing.T) string {
	t.Helper()
	answers, data, _, _ := setup(t, eval.FixtureOptions{Sessions: 10, Seed: 21, LongPageEvery: 3, LongPageBytes: 30000})
	a, b := newFakeOpenAI(t, answers), newFakeOpenAI(t, nil)
	cfg := config(data, a.URL, filepath.Join(t.TempDir(), "out"))
	cfg.Budget.Ctx, cfg.Budget.MaxPageBytes = 8192, 8192
	cfg.Compare = eval.TargetConfig{URL: b.URL, Mode: eval.ModeOpenAI, Format: "prompted", Model: "https://example.com/model<script>"}
	if _, err := eval.Run(context.Background(), cfg, eval.Deps{}); err != nil {
		t.Fatal(err)
	}
	return cfg.Out
}

func TestReportFiles(t *testing.T) {
	t.Parallel()
	dir := writeReport(t)
	v := reportcheck.CheckConforms(t, filepath.Join(dir, "report.json"), schemaFile)
	if v["schema_version"] != 1.0 || len(v["runs"].([]any)) != 2 || v["comparison"] == nil {
		t.Errorf("report: version %v, %d runs, comparison %v", v["schema_version"], len(v["runs"].([]any)), v["comparison"] != nil)
	}

	page, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	tags := reportcheck.CheckSelfContained(t, page)
	svgs, tables := tags["svg"], tags["table"]
	// Headline, comparison, reductions; per run: by type, confusion,
	// outcome, errors; one histogram per run.
	if svgs != 2 || tables != 3+2*4 {
		t.Errorf("report.html has %d histograms and %d tables, want 2 and 11", svgs, tables)
	}
	for _, want := range []string{"accuracy (per session)", "Confusion matrix", "McNemar", "Sessions by accuracy", "truth element left out", "did_not_terminate", "<rect"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if bytes.Contains(page, []byte("<script")) || !bytes.Contains(page, []byte("https&#58;&#47;&#47;example.com/model&lt;script&gt;")) {
		t.Error("the model id was not escaped")
	}
}
