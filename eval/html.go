package eval

import (
	"bytes"
	"fmt"
	"html/template"
	"strings"

	"github.com/nextact/nextact/bench"
)

// HTML renders report.html: one self-contained page (inline CSS and SVG,
// no script, no external reference) with the headline metrics and their
// intervals, accuracy by action type, the confusion matrices, the error
// categories, the per-session accuracy histograms, the reductions and the
// comparison.
func (r *Report) HTML() ([]byte, error) {
	data := htmlData{R: r, Types: ActionTypes, Preds: PredictedTypes, Errors: ErrorCategories}
	for _, run := range r.Runs {
		data.Hosts = append(data.Hosts, bench.HostOf(run.URL))
		data.Hists = append(data.Hists, template.HTML(histogramSVG(run.Label, run.Metrics.Histogram)))
	}
	var b bytes.Buffer
	if err := reportTemplate.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("render report.html: %w", err)
	}
	// No URL survives in the page as one, even one a server put in a model id.
	return bench.DefuseURLs(b.Bytes()), nil
}

type htmlData struct {
	R                    *Report
	Hosts                []string
	Hists                []template.HTML
	Types, Preds, Errors []string
}

// histogramSVG draws the sessions per accuracy tenth as bars.
func histogramSVG(label string, bins []int) string {
	const w, h, left, bottom, top = 420, 200, 36, 30, 14
	peak := 1
	for _, n := range bins {
		peak = max(peak, n)
	}
	bw := float64(w-left-8) / float64(len(bins))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="sessions by accuracy, run %s">`, w, h, w, h, template.HTMLEscapeString(label))
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555"/>`, left, h-bottom, w-8, h-bottom)
	for i, n := range bins {
		bh := float64(h-bottom-top) * float64(n) / float64(peak)
		x := float64(left) + float64(i)*bw
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#1f77b4"><title>%d sessions</title></rect>`, x+1, float64(h-bottom)-bh, bw-2, bh, n)
		if n > 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">%d</text>`, x+bw/2, float64(h-bottom)-bh-3, n)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%d%%</text>`, x+bw/2, h-bottom+12, i*10)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="middle">per-session accuracy (bins of 10 points; the last holds 100%%)</text></svg>`, (w+left)/2, h-4)
	return b.String()
}

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct":    pct,
	"ci":     withCI,
	"signed": signedCI,
	"cell":   func(m map[string]map[string]int, t, p string) int { return m[t][p] },
	"pval":   func(p float64) string { return fmt.Sprintf("%.4g", p) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nextact eval</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
.big{font-size:22px;font-weight:bold}
.note{color:#666;font-size:13px}
</style></head><body>
<h1>nextact eval</h1>
<p class="note">{{.R.Tool}} {{.R.Version}}, started {{.R.StartedAt}}. {{.R.Data.Cases}} cases of {{.R.Data.Selected}} sessions ({{.R.Data.Selection}}) from {{.R.Data.Path}} ({{.R.Data.Format}}, {{.R.Data.Rows}} steps read). Intervals: bootstrap 95% over sessions, {{.R.Config.Bootstrap}} resamples, seed {{.R.Config.Seed}}.</p>
<h2>Headline</h2>
<table><tr><th>run</th><th>target</th><th>accuracy (per session)</th><th>micro accuracy</th><th>outcome F1 (purchase)</th><th>outcome macro F1</th></tr>
{{range $i, $r := .R.Runs}}<tr><td>{{$r.Label}}</td><td>{{$r.Mode}} {{index $.Hosts $i}}, {{$r.Model}}, {{$r.Format}}{{if $r.JSONSchema}}, json schema{{end}}</td>
<td class="big">{{ci $r.Metrics.Accuracy}}</td><td>{{ci $r.Metrics.MicroAccuracy}}<br>{{$r.Metrics.Correct}} of {{$r.Metrics.Cases}}</td>
<td class="big">{{ci $r.Metrics.Outcome.F1}}</td><td>{{ci $r.Metrics.Outcome.MacroF1}}</td></tr>
{{end}}</table>
{{with .R.Comparison}}<h2>Comparison</h2>
<table><tr><th>pairs</th><th>both right</th><th>only {{.A}}</th><th>only {{.B}}</th><th>neither</th><th>McNemar p</th><th>test</th><th>accuracy {{.A}} − {{.B}}</th></tr>
<tr><td>{{.Cases}}</td><td>{{.BothCorrect}}</td><td>{{.AOnly}}</td><td>{{.BOnly}}</td><td>{{.Neither}}</td><td>{{pval .McNemar.PValue}}</td><td>{{.McNemar.Method}}</td><td>{{signed .AccuracyDifference}}</td></tr></table>{{end}}
{{range $i, $r := .R.Runs}}<h2>Run {{$r.Label}}</h2>
<h3>Accuracy by action type</h3>
<table><tr><th>truth</th><th>cases</th><th>correct</th><th>accuracy</th></tr>
{{range $.Types}}{{$t := index $r.Metrics.ByType .}}<tr><td>{{.}}</td><td>{{$t.Cases}}</td><td>{{$t.Correct}}</td><td>{{pct $t.Accuracy}}</td></tr>{{end}}</table>
<h3>Confusion matrix of action types</h3>
<table><tr><th>truth \ predicted</th>{{range $.Preds}}<th>{{.}}</th>{{end}}</tr>
{{range $t := $.Types}}<tr><td>{{$t}}</td>{{range $p := $.Preds}}<td>{{cell $r.Metrics.Confusion $t $p}}</td>{{end}}</tr>{{end}}</table>
<p class="note">"none": no answer parsed, the request failed or was not sent; "other": an action type outside the action space.</p>
<h3>Session outcome</h3>
<table><tr><th>sessions</th><th>tp</th><th>fp</th><th>fn</th><th>tn</th><th>precision</th><th>recall</th><th>F1 purchase</th><th>F1 no purchase</th><th>macro F1</th></tr>
{{with $r.Metrics.Outcome}}<tr><td>{{.Sessions}}</td><td>{{.TP}}</td><td>{{.FP}}</td><td>{{.FN}}</td><td>{{.TN}}</td><td>{{pct .Precision}}</td><td>{{pct .Recall}}</td><td>{{ci .F1}}</td><td>{{pct .F1NoPurchase}}</td><td>{{ci .MacroF1}}</td></tr>{{end}}</table>
<h3>Errors</h3>
<table><tr><th>category</th><th>cases</th></tr>
{{range $.Errors}}<tr><td>{{.}}</td><td>{{index $r.Metrics.Errors .}}</td></tr>{{end}}</table>
<p class="note">Answers: {{$r.Metrics.Answers.Answered}} answered, {{$r.Metrics.Answers.Unparsed}} unparsed, {{$r.Metrics.Answers.Invalid}} invalid, {{$r.Metrics.Answers.Failed}} failed, {{$r.Metrics.Answers.NotSent}} not sent. Run: {{$r.Run.Requests}} requests ({{$r.Run.Retries}} retries, {{$r.Run.Resumed}} cases resumed) in {{$r.Run.WallS}} s.</p>
<h3>Sessions by accuracy</h3>
{{index $.Hists $i}}
{{end}}
<h2>Reductions (the same for every run)</h2>
{{with .R.Reductions}}<table><tr><th>what</th><th>count</th></tr>
<tr><td>cases</td><td>{{.Cases}}</td></tr>
<tr><td>current page reduced (share)</td><td>{{.CurrentPageReduced}} ({{pct .Share}})</td></tr>
<tr><td>… to its elements and part of its text</td><td>{{.PageText}}</td></tr>
<tr><td>… capped (elements left out)</td><td>{{.PageCapped}}</td></tr>
<tr><td>… truth element left out</td><td>{{.TruthCut}}</td></tr>
<tr><td>written as a flat list</td><td>{{.Flat}}</td></tr>
<tr><td>history pages reduced / omitted</td><td>{{.HistoryPagesReduced}} / {{.HistoryPagesOmitted}}</td></tr>
<tr><td>history steps dropped</td><td>{{.HistoryStepsDropped}}</td></tr>
<tr><td>personas cut</td><td>{{.PersonasCut}}</td></tr>
<tr><td>cases not sent</td><td>{{.NotSent}}</td></tr></table>{{end}}
<p class="note">Budget: --ctx {{.R.Config.Ctx}} tokens, --max-tokens {{.R.Config.MaxTokens}}, {{.R.Config.BytesPerToken}} bytes per token, pages up to {{.R.Config.MaxPageBytes}} bytes.</p>
</body></html>
`))
