package eval

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/nextact/nextact/bench"
)

// SchemaVersion is the version of report.json's schema (docs/EVAL.md). It
// changes only when a field is removed, renamed or changes meaning; added
// fields keep it.
const SchemaVersion = 1

// Report is report.json. Everything but StartedAt and each run's Run
// depends only on the data, the configuration and the targets' answers:
// a run interrupted and resumed reports the same.
type Report struct {
	SchemaVersion int          `json:"schema_version"`
	Tool          string       `json:"tool"`
	Version       string       `json:"version"`
	StartedAt     string       `json:"started_at"`
	Data          DataReport   `json:"data"`
	Config        ConfigReport `json:"config"`
	Reductions    Reductions   `json:"reductions"`
	Runs          []RunReport  `json:"runs"`
	Comparison    *Comparison  `json:"comparison"`
}

// DataReport is what was read and selected.
type DataReport struct {
	Path   string   `json:"path"`
	Format string   `json:"format"`
	Files  []string `json:"files"`
	// Rows counts the steps read; Dropped those left out, by reason.
	Rows    int            `json:"rows"`
	Dropped map[string]int `json:"dropped"`
	// Sessions in the data; SessionsWithCases those with at least one
	// case; Selected those evaluated (Selection says how they were
	// chosen), with Cases cases.
	Sessions          int    `json:"sessions"`
	SessionsWithCases int    `json:"sessions_with_cases"`
	Selection         string `json:"selection"`
	Selected          int    `json:"selected_sessions"`
	Cases             int    `json:"cases"`
	// PurchaseNames counts the element names clicked as purchases in the
	// data.
	PurchaseNames int `json:"purchase_names"`
}

// ConfigReport is the configuration that decides the results.
type ConfigReport struct {
	MaxTokens       int     `json:"max_tokens"`
	Temperature     float64 `json:"temperature"`
	Seed            uint64  `json:"seed"`
	Ctx             int     `json:"ctx"`
	BytesPerToken   float64 `json:"bytes_per_token"`
	MaxPageBytes    int     `json:"max_page_bytes"`
	MaxPersonaBytes int     `json:"max_persona_bytes"`
	MaxBodyBytes    int     `json:"max_body_bytes"`
	Rationales      bool    `json:"rationales"`
	Bootstrap       int     `json:"bootstrap"`
}

// Reductions sums what the reduction policy did to the cases (the same
// for every target).
type Reductions struct {
	Cases int `json:"cases"`
	// CurrentPageReduced counts the cases whose page was reduced: to its
	// elements and part of its text (PageText) or further (PageCapped);
	// Flat those written as a flat list. Share is the fraction reduced.
	CurrentPageReduced int      `json:"current_page_reduced"`
	PageText           int      `json:"page_text"`
	PageCapped         int      `json:"page_capped"`
	Flat               int      `json:"flat"`
	Share              *float64 `json:"share_current_page_reduced"`
	// TruthCut counts the cases whose truth element the cap left out.
	TruthCut            int `json:"truth_cut"`
	HistoryPagesReduced int `json:"history_pages_reduced"`
	HistoryPagesOmitted int `json:"history_pages_omitted"`
	HistoryStepsDropped int `json:"history_steps_dropped"`
	// CasesHistoryCut counts the cases that lost a history page or step.
	CasesHistoryCut int `json:"cases_history_cut"`
	PersonasCut     int `json:"personas_cut"`
	NotSent         int `json:"not_sent"`
}

// RunReport is one target's results.
type RunReport struct {
	Label      string  `json:"label"`
	URL        string  `json:"url"`
	Mode       string  `json:"mode"`
	Model      string  `json:"model"`
	Format     string  `json:"format"`
	JSONSchema bool    `json:"json_schema"`
	Metrics    Metrics `json:"metrics"`
	// Run is how this invocation went (timing: differs between runs).
	Run RunInfo `json:"run"`
}

// RunInfo is how the run went.
type RunInfo struct {
	WallS float64 `json:"wall_s"`
	// CasesPerS is the cases finished in this invocation per second.
	CasesPerS        float64     `json:"cases_per_s"`
	Resumed          int         `json:"resumed"`
	Requests         int         `json:"requests"`
	Retries          int         `json:"retries"`
	LatencyMs        *bench.Dist `json:"latency_ms"`
	PromptTokens     int         `json:"prompt_tokens"`
	CompletionTokens int         `json:"completion_tokens"`
}

// Comparison pairs two runs' outcomes case by case.
type Comparison struct {
	A     string `json:"a"`
	B     string `json:"b"`
	Cases int    `json:"cases"`
	// BothCorrect, AOnly, BOnly and Neither count the cases by which run
	// got them right.
	BothCorrect int         `json:"both_correct"`
	AOnly       int         `json:"a_only"`
	BOnly       int         `json:"b_only"`
	Neither     int         `json:"neither"`
	McNemar     McNemarJSON `json:"mcnemar"`
	// AccuracyDifference is a's accuracy (per session) minus b's, with a
	// paired bootstrap interval over sessions.
	AccuracyDifference Value `json:"accuracy_difference"`
}

// McNemarJSON is McNemar's test in report.json.
type McNemarJSON struct {
	Method    string   `json:"method"`
	Statistic *float64 `json:"statistic"`
	PValue    float64  `json:"p_value"`
}

// reductions sums the cases' reductions.
func reductions(results []Result) Reductions {
	var r Reductions
	for _, res := range results {
		red := res.Reduction
		r.Cases++
		switch red.Page {
		case "text":
			r.PageText++
		case "cap":
			r.PageCapped++
		}
		if red.Flat {
			r.Flat++
		}
		if red.TruthCut {
			r.TruthCut++
		}
		r.HistoryPagesReduced += red.HistoryPagesReduced
		r.HistoryPagesOmitted += red.HistoryPagesOmitted
		r.HistoryStepsDropped += red.HistoryStepsDropped
		if red.HistoryPagesOmitted > 0 || red.HistoryStepsDropped > 0 {
			r.CasesHistoryCut++
		}
		if red.PersonaCut {
			r.PersonasCut++
		}
		if red.NotSent != "" {
			r.NotSent++
		}
	}
	r.CurrentPageReduced = r.PageText + r.PageCapped
	r.Share = ratio(r.CurrentPageReduced, r.Cases)
	return r
}

// compare pairs the scored cases of two runs (same cases, same order).
func compare(a, b *RunReport, sa, sb []Scored, reps int, seed uint64) *Comparison {
	c := &Comparison{A: a.Label, B: b.Label, Cases: len(sa)}
	for i := range sa {
		switch {
		case sa[i].Correct && sb[i].Correct:
			c.BothCorrect++
		case sa[i].Correct:
			c.AOnly++
		case sb[i].Correct:
			c.BOnly++
		default:
			c.Neither++
		}
	}
	m := McNemarTest(c.AOnly, c.BOnly)
	c.McNemar = McNemarJSON{Method: m.Method, Statistic: m.Statistic, PValue: m.PValue}
	if x, y := a.Metrics.Accuracy.Value, b.Metrics.Accuracy.Value; x != nil && y != nil {
		d := *x - *y
		c.AccuracyDifference.Value = &d
	}
	c.AccuracyDifference.CI95 = bootstrapDiffCI(sessionStats(sa), sessionStats(sb), reps, seed)
	return c
}

// WriteFiles writes report.json and report.html into dir.
func (r *Report) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	page, err := r.HTML()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.html"), page, 0o644)
}
