package bench

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"slices"
	"strconv"
)

// HTML renders report.html: one self-contained page (inline CSS and SVG,
// no script, no external reference) with the summary, the comparison,
// latency over time, latency distributions and throughput over time.
func (r *Report) HTML() ([]byte, error) {
	data := htmlData{R: r, Summary: summaryRows(r)}
	for _, m := range []struct{ key, name string }{{"e2e", "End-to-end latency"}, {"ttft", "Time to first token"}} {
		data.OverTime = append(data.OverTime, template.HTML(overTime(r, m.key, m.name).svg()))
		data.Dists = append(data.Dists, template.HTML(cdf(r, m.key, m.name).svg()))
	}
	data.Throughput = template.HTML(throughput(r).svg())
	for i := range r.Runs {
		data.Targets = append(data.Targets, HostOf(r.Runs[i].URL))
	}
	var b bytes.Buffer
	if err := reportTemplate.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("render report.html: %w", err)
	}
	// Belt and braces: no URL survives in the page as one.
	return DefuseURLs(b.Bytes()), nil
}

type htmlData struct {
	R          *Report
	Targets    []string
	Summary    [][]string
	OverTime   []template.HTML
	Dists      []template.HTML
	Throughput template.HTML
}

// summaryRows is the summary table: one row per metric, one column per
// run.
func summaryRows(r *Report) [][]string {
	type col = func(rr *RunReport) string
	f := func(x float64, prec int) string { return strconv.FormatFloat(x, 'f', prec, 64) }
	d := func(pick func(Latency) *Dist, q func(*Dist) float64) col {
		return func(rr *RunReport) string {
			if x := pick(rr.LatencyMs); x != nil {
				return f(q(x), 1)
			}
			return "-"
		}
	}
	rows := []struct {
		name string
		get  col
	}{
		{"mode", func(rr *RunReport) string { return rr.Mode }},
		{"model", func(rr *RunReport) string { return rr.Model }},
		{"rounds, wall s", func(rr *RunReport) string { return fmt.Sprintf("%d, %.1f", rr.Rounds, rr.WallS) }},
		{"steps issued", func(rr *RunReport) string { return strconv.Itoa(rr.Steps.Issued) }},
		{"success / rejected / failed", func(rr *RunReport) string {
			return fmt.Sprintf("%d / %d / %d", rr.Steps.Success, rr.Steps.Rejected, rr.Steps.Failed)
		}},
		{"unparsed answers", func(rr *RunReport) string { return strconv.Itoa(rr.Steps.Unparsed) }},
		{"sessions finished / aborted / cancelled", func(rr *RunReport) string {
			return fmt.Sprintf("%d / %d / %d", rr.Sessions.Finished, rr.Sessions.Aborted, rr.Sessions.Cancelled+rr.Sessions.NotStarted)
		}},
		{"steps/s", func(rr *RunReport) string { return f(rr.Throughput.StepsPerS, 2) }},
		{"goodput steps/s", func(rr *RunReport) string { return f(rr.Goodput.StepsPerS, 2) }},
		{"sessions/s", func(rr *RunReport) string { return f(rr.Throughput.SessionsPerS, 3) }},
		{"input tok/s", func(rr *RunReport) string { return f(rr.Throughput.InputTokensPerS, 0) }},
		{"output tok/s", func(rr *RunReport) string { return f(rr.Throughput.OutputTokensPerS, 1) }},
		{"mean prompt tokens", func(rr *RunReport) string { return f(rr.Tokens.MeanPromptTokens, 0) }},
		{"cached prompt tokens", func(rr *RunReport) string {
			if rr.Tokens.Cached == nil {
				return "not reported"
			}
			return group(*rr.Tokens.Cached)
		}},
		{"TTFT p50 / p90 / p99 ms", joinCols(d(ttftOf, p50), d(ttftOf, p90), d(ttftOf, p99))},
		{"ITL p50 / p90 / p99 ms", joinCols(d(itlOf, p50), d(itlOf, p90), d(itlOf, p99))},
		{"E2E p50 / p90 / p99 ms", joinCols(d(e2eOf, p50), d(e2eOf, p90), d(e2eOf, p99))},
		{"TTFT / ITL source", func(rr *RunReport) string { return rr.TTFTSource + " / " + rr.ITLSource }},
	}
	out := make([][]string, 0, len(rows))
	for _, row := range rows {
		line := []string{row.name}
		for i := range r.Runs {
			line = append(line, row.get(&r.Runs[i]))
		}
		out = append(out, line)
	}
	return out
}

func joinCols(cols ...func(*RunReport) string) func(*RunReport) string {
	return func(rr *RunReport) string {
		s := ""
		for i, c := range cols {
			if i > 0 {
				s += " / "
			}
			s += c(rr)
		}
		return s
	}
}

// value reads a sample's metric (e2e or ttft) in ms.
func value(s Sample, key string) (float64, bool) {
	if key == "ttft" {
		if s.TTFTMs == nil {
			return 0, false
		}
		return *s.TTFTMs, true
	}
	return s.E2EMs, true
}

func seriesName(rr *RunReport) string { return rr.Label + " (" + rr.Mode + ")" }

// overTime plots each successful step's latency at the time it was sent.
func overTime(r *Report, key, name string) chart {
	c := chart{title: name + " over time", xLabel: "time since the run's start, s", yLabel: "ms"}
	for i := range r.Runs {
		rr := &r.Runs[i]
		s := series{name: seriesName(rr), color: seriesColors[i%len(seriesColors)]}
		for _, x := range rr.Samples {
			if v, ok := value(x, key); ok && x.Outcome == string(OutcomeSuccess) {
				s.points = append(s.points, [2]float64{x.TS, v})
			}
		}
		c.series = append(c.series, s)
	}
	return c
}

// cdf plots the empirical distribution of successful steps' latency.
func cdf(r *Report, key, name string) chart {
	c := chart{title: name + " distribution (CDF)", xLabel: "ms", yLabel: "fraction of steps"}
	for i := range r.Runs {
		rr := &r.Runs[i]
		var vs []float64
		for _, x := range rr.Samples {
			if v, ok := value(x, key); ok && x.Outcome == string(OutcomeSuccess) {
				vs = append(vs, v)
			}
		}
		slices.Sort(vs)
		s := series{name: seriesName(rr), color: seriesColors[i%len(seriesColors)], line: true}
		for j, v := range vs {
			s.points = append(s.points, [2]float64{v, float64(j+1) / float64(len(vs))})
		}
		c.series = append(c.series, s)
	}
	return c
}

// throughput plots successful steps per second over each run's time
// (rounds overlaid), in 5 to 60 bins of about 5 steps each.
func throughput(r *Report) chart {
	c := chart{title: "Successful steps per second", xLabel: "time since the run's start, s", yLabel: "steps/s"}
	for i := range r.Runs {
		rr := &r.Runs[i]
		end := 0.0
		for _, x := range rr.Samples {
			end = max(end, x.TS+x.E2EMs/1000)
		}
		s := series{name: seriesName(rr), color: seriesColors[i%len(seriesColors)], line: true}
		if end > 0 {
			bins := min(max(rr.Steps.Success/5/max(1, rr.Rounds), 5), 60)
			width := end / float64(bins)
			counts := make([]float64, bins)
			for _, x := range rr.Samples {
				if x.Outcome == string(OutcomeSuccess) {
					k := min(bins-1, int(math.Floor((x.TS+x.E2EMs/1000)/width)))
					counts[k]++
				}
			}
			for k, n := range counts {
				s.points = append(s.points, [2]float64{(float64(k) + 0.5) * width, n / width / float64(max(1, rr.Rounds))})
			}
		}
		c.series = append(c.series, s)
	}
	return c
}

var reportTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nextact bench report</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:right;font-variant-numeric:tabular-nums}
th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:16px}
svg{background:#fff;border:1px solid #ddd;font-family:inherit}
.muted{color:#666;font-size:0.9em}
</style></head><body>
<h1>nextact bench</h1>
{{with .R.Config}}<p>{{.Sessions}} sessions &times; {{.Steps}} steps; pages of about {{.PageTokens}} tokens ({{.PageBytes}} bytes); max_tokens {{.MaxTokens}}; arrival {{.Arrival}}; think time {{.ThinkTimeMs}} ms; seed {{.Seed}}; temperature {{.Temperature}}; rounds {{.Rounds}}.</p>{{end}}
<p class="muted">Started {{.R.StartedAt}} &middot; {{.R.Tool}} {{.R.Version}} &middot; report schema_version {{.R.SchemaVersion}} &middot; latencies over successful steps</p>
<h2>Summary</h2>
<table><tr><th>metric</th>{{range $i, $t := .Targets}}<th>{{(index $.R.Runs $i).Label}}: {{$t}}</th>{{end}}</tr>
{{range .Summary}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>
{{with .R.Comparison}}<h2>Comparison ({{.B}} / {{.A}})</h2>
<table><tr><th>metric</th><th>{{.A}}</th><th>{{.B}}</th><th>{{.B}} / {{.A}}</th><th>better</th></tr>
{{range .Rows}}<tr><td>{{.Metric}}</td><td>{{with .A}}{{printf "%.2f" .}}{{else}}-{{end}}</td><td>{{with .B}}{{printf "%.2f" .}}{{else}}-{{end}}</td><td>{{with .Ratio}}{{printf "%.3f" .}}{{else}}-{{end}}</td><td>{{if .HigherIsBetter}}higher{{else}}lower{{end}}</td></tr>
{{end}}</table>{{end}}
<h2>Latency over time</h2>
<div class="charts">{{range .OverTime}}{{.}}{{end}}</div>
<h2>Latency distribution</h2>
<div class="charts">{{range .Dists}}{{.}}{{end}}</div>
<h2>Throughput over time</h2>
<div class="charts">{{.Throughput}}</div>
</body></html>
`))
