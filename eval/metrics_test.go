package eval_test

import (
	"encoding/json"
	"flag"
	"math"
	"os"
	"testing"

	"github.com/nextact/nextact/eval"
	"github.com/nextact/nextact/nextaction"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

func click(n string) *nextaction.Action { return &nextaction.Action{Type: "click", Name: n} }

func typed(n, t string) *nextaction.Action {
	return &nextaction.Action{Type: "type_and_submit", Name: n, Text: t}
}

func term() *nextaction.Action { return &nextaction.Action{Type: "terminate"} }

// page has the elements the hand-built cases name.
const page = `<input name="search_input"><input name="zip"><a name="shirt.view_product">Shirt</a>` +
	`<a name="jeans.view_product">Jeans</a><button name="buy_now">Buy now</button><div name="shirt"></div>`

// goldenCase is one hand-built case and its result.
type goldenCase struct {
	session  string
	truth    *nextaction.Action
	purchase bool // the truth is a purchase click
	result   *eval.Result
}

func ok(a *nextaction.Action) *eval.Result { return &eval.Result{Status: eval.StatusOK, Action: a} }

// goldenCases: five sessions with known answers.
//
//	s1: 3 cases, 2 right (a wrong keyword), ends in a purchase predicted: TP
//	s2: 2 cases, 0 right (unparsed; clicked buy_now instead of terminating), ends in terminate predicted a purchase: FP
//	s3: 2 cases, 1 right (wrong element), ends in terminate, predicted terminate: TN
//	s4: 1 case, 0 right (did not click: typed), truth purchase, predicted no purchase: FN
//	s5: 4 cases, 1 right: a failed request, a case not sent, an invalid answer (a container), ends in a right terminate: TN
//
// Per-session accuracy: 2/3, 0, 1/2, 0, 1/4; micro 4/12.
// Outcome: TP 1, FP 1, FN 1, TN 2: F1 purchase 2/4 = 0.5, F1 no purchase
// 4/6, macro (0.5 + 2/3)/2.
var goldenCases = []goldenCase{
	{"s1", click("shirt.view_product"), false, ok(click("shirt.view_product"))},
	{"s1", typed("search_input", "red shirt"), false, ok(typed("search_input", "red shirts"))},
	{"s1", click("buy_now"), true, ok(click("buy_now"))},
	{"s2", click("jeans.view_product"), false, &eval.Result{Status: eval.StatusOK, Raw: "I would look at the jeans."}},
	{"s2", term(), false, ok(click("buy_now"))},
	{"s3", click("jeans.view_product"), false, ok(click("shirt.view_product"))},
	{"s3", term(), false, ok(term())},
	{"s4", click("buy_now"), true, ok(typed("search_input", "jeans"))},
	{"s5", typed("search_input", "shoes"), false, &eval.Result{Status: eval.StatusFailed, Error: "503"}},
	{"s5", typed("zip", "02115"), false, &eval.Result{Status: eval.StatusNotSent}},
	{"s5", click("shirt.view_product"), false, ok(click("shirt"))},
	{"s5", term(), false, ok(term())},
}

func scoreGolden(t *testing.T, gcs []goldenCase) []eval.Scored {
	t.Helper()
	purchase := map[string]bool{"buy_now": true}
	var cases []eval.Case
	for i, g := range gcs {
		last := i == len(gcs)-1 || gcs[i+1].session != g.session
		cases = append(cases, eval.Case{ID: eval.CaseID(g.session, i), SessionID: g.session, Index: i, Page: page, Truth: *g.truth, Purchase: g.purchase, Last: last})
	}
	var out []eval.Scored
	for i := range cases {
		out = append(out, eval.Score(&cases[i], gcs[i].result, purchase))
	}
	return out
}

func near(t *testing.T, name string, got *float64, want float64) {
	t.Helper()
	if got == nil || math.Abs(*got-want) > 1e-12 {
		t.Errorf("%s = %v, want %v", name, deref(got), want)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestMetricsGolden(t *testing.T) {
	t.Parallel()
	m := eval.Aggregate(scoreGolden(t, goldenCases), 400, 1)
	near(t, "accuracy", m.Accuracy.Value, (2.0/3+0+0.5+0+0.25)/5)
	near(t, "micro", m.MicroAccuracy.Value, 4.0/12)
	if m.Sessions != 5 || m.Cases != 12 || m.Correct != 4 {
		t.Errorf("sessions %d cases %d correct %d", m.Sessions, m.Cases, m.Correct)
	}
	o := m.Outcome
	if o.TP != 1 || o.FP != 1 || o.FN != 1 || o.TN != 2 || o.Sessions != 5 {
		t.Errorf("outcome %+v", o)
	}
	near(t, "f1", o.F1.Value, 0.5)
	near(t, "f1 no purchase", o.F1NoPurchase, 2.0/3)
	near(t, "macro f1", o.MacroF1.Value, (0.5+2.0/3)/2)
	near(t, "precision", o.Precision, 0.5)
	near(t, "recall", o.Recall, 0.5)
	wantErrors := map[string]int{
		eval.ErrWrongKeyword: 1, eval.ErrUnparsed: 1, eval.ErrDidNotTerminate: 1, eval.ErrWrongElement: 1,
		eval.ErrDidNotClick: 1, eval.ErrFailed: 1, eval.ErrNotSent: 1, eval.ErrInvalid: 1,
	}
	for _, c := range eval.ErrorCategories {
		if m.Errors[c] != wantErrors[c] {
			t.Errorf("errors[%s] = %d, want %d", c, m.Errors[c], wantErrors[c])
		}
	}
	if a := m.Answers; a.Answered != 10 || a.Unparsed != 1 || a.Invalid != 1 || a.Failed != 1 || a.NotSent != 1 {
		t.Errorf("answers %+v", a)
	}
	if m.Confusion["terminate"]["click"] != 1 || m.Confusion["click"]["none"] != 1 || m.Confusion["type_and_submit"]["none"] != 2 || m.Confusion["click"]["type_and_submit"] != 1 {
		t.Errorf("confusion %v", m.Confusion)
	}
	// Session accuracies 2/3, 0, 1/2, 0, 1/4 fall in bins 6, 0, 5, 0, 2.
	if h := m.Histogram; h[0] != 2 || h[2] != 1 || h[5] != 1 || h[6] != 1 {
		t.Errorf("histogram %v", h)
	}
	for name, ci := range map[string]*eval.CI{"accuracy": m.Accuracy.CI95, "micro": m.MicroAccuracy.CI95, "f1": o.F1.CI95, "macro": o.MacroF1.CI95} {
		if ci == nil || ci[0] > ci[1] || ci[0] < 0 || ci[1] > 1 {
			t.Errorf("%s interval %v", name, ci)
		}
	}
	if m.Accuracy.CI95[0] > *m.Accuracy.Value || m.Accuracy.CI95[1] < *m.Accuracy.Value {
		t.Errorf("accuracy %v outside its interval %v", *m.Accuracy.Value, m.Accuracy.CI95)
	}
	golden(t, "testdata/metrics.golden.json", m)
}

// golden compares v's JSON with a golden file (-update rewrites it).
func golden(t *testing.T, path string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (go test ./eval -run %s -update to accept):\n%s", path, t.Name(), got)
	}
}

// Edge cases: no purchase anywhere (F1 of the purchase class undefined,
// macro undefined), every answer unparsed, no intervals without
// resamples, and no cases at all.
func TestMetricsEdges(t *testing.T) {
	t.Parallel()
	noBuy := []goldenCase{
		{"a", click("shirt.view_product"), false, ok(click("shirt.view_product"))},
		{"a", term(), false, ok(term())},
		{"b", term(), false, &eval.Result{Status: eval.StatusOK, Raw: "?"}},
	}
	m := eval.Aggregate(scoreGolden(t, noBuy), 0, 1)
	near(t, "accuracy", m.Accuracy.Value, 0.5)
	if m.Outcome.F1.Value != nil || m.Outcome.MacroF1.Value != nil || m.Outcome.Precision != nil || m.Outcome.Recall != nil {
		t.Errorf("purchase F1 defined without purchases: %+v", m.Outcome)
	}
	near(t, "f1 no purchase", m.Outcome.F1NoPurchase, 1) // both sessions: no purchase, none predicted
	if m.Accuracy.CI95 != nil {
		t.Errorf("interval without resamples: %v", m.Accuracy.CI95)
	}
	empty := eval.Aggregate(nil, 100, 1)
	if empty.Accuracy.Value != nil || empty.MicroAccuracy.Value != nil || empty.Sessions != 0 || empty.Accuracy.CI95 != nil {
		t.Errorf("empty metrics %+v", empty)
	}
	// A case without any result counts as failed.
	c := eval.Case{ID: "x#2", SessionID: "x", Truth: *term(), Last: true}
	if s := eval.Score(&c, nil, nil); s.Correct || s.Category != eval.ErrFailed || s.Status != eval.StatusFailed {
		t.Errorf("no result scored %+v", s)
	}
	// Ties: a typed text that matches but into another input.
	c = eval.Case{ID: "y#2", SessionID: "y", Page: page, Truth: *typed("search_input", "a")}
	if s := eval.Score(&c, ok(typed("zip", "a")), nil); s.Category != eval.ErrWrongInput {
		t.Errorf("wrong input scored %+v", s)
	}
	// An unknown action type is invalid, counted as "other".
	if s := eval.Score(&c, ok(&nextaction.Action{Type: "scroll"}), nil); s.Category != eval.ErrInvalid || s.Pred != "other" {
		t.Errorf("scroll scored %+v", s)
	}
}

func TestF1(t *testing.T) {
	t.Parallel()
	if _, ok := eval.F1(0, 0, 0); ok {
		t.Error("F1 defined with no positives at all")
	}
	for _, tc := range []struct {
		tp, fp, fn int
		want       float64
	}{{1, 0, 0, 1}, {0, 3, 0, 0}, {0, 0, 2, 0}, {2, 1, 1, 4.0 / 6}, {3, 1, 0, 6.0 / 7}} {
		if got, ok := eval.F1(tc.tp, tc.fp, tc.fn); !ok || math.Abs(got-tc.want) > 1e-15 {
			t.Errorf("F1(%d, %d, %d) = %v, want %v", tc.tp, tc.fp, tc.fn, got, tc.want)
		}
	}
}

func TestMcNemar(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		b, c   int
		method string
		p      float64
		chi    float64
	}{
		{0, 0, "exact_binomial", 1, 0},
		{1, 6, "exact_binomial", 16.0 / 128, 0}, // 2 * (1 + 7) / 2^7
		{3, 3, "exact_binomial", 1, 0},          // a tie
		{0, 10, "exact_binomial", 2.0 / 1024, 0},
		{12, 12, "exact_binomial", 1, 0},                       // 24 pairs: still exact
		{13, 12, "chi_square_cc", 1, 0},                        // (|1| - 1)^2 / 25 = 0
		{30, 10, "chi_square_cc", 0.002663119259138554, 9.025}, // chi2.sf(9.025, 1)
	} {
		m := eval.McNemarTest(tc.b, tc.c)
		if m.Method != tc.method || math.Abs(m.PValue-tc.p) > 1e-12 {
			t.Errorf("McNemar(%d, %d) = %s p %v, want %s p %v", tc.b, tc.c, m.Method, m.PValue, tc.method, tc.p)
		}
		if tc.method == "chi_square_cc" && (m.Statistic == nil || math.Abs(*m.Statistic-tc.chi) > 1e-12) {
			t.Errorf("McNemar(%d, %d) statistic %v, want %v", tc.b, tc.c, deref(m.Statistic), tc.chi)
		}
	}
	// Symmetric in b and c; the exact test at 24 pairs and chi-square at 25.
	if eval.McNemarTest(2, 9).PValue != eval.McNemarTest(9, 2).PValue {
		t.Error("not symmetric")
	}
	if eval.McNemarTest(13, 12).Method != "chi_square_cc" || eval.McNemarTest(12, 12).Method != "exact_binomial" {
		t.Error("threshold between the tests moved")
	}
}
