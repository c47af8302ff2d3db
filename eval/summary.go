package eval

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/nextact/nextact/bench"
)

// pct formats a fraction as a percentage, "-" when undefined.
func pct(x *float64) string {
	if x == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", 100**x)
}

// withCI formats a value and its interval.
func withCI(v Value) string {
	s := pct(v.Value)
	if v.CI95 != nil {
		s += fmt.Sprintf(" [%.2f, %.2f]", 100*v.CI95[0], 100*v.CI95[1])
	}
	return s
}

// WriteSummary writes the one-screen summary: the data, each target, the
// headline metrics side by side with their intervals, by type, errors,
// reductions and the comparison.
func (r *Report) WriteSummary(w io.Writer) {
	d := r.Data
	fmt.Fprintf(w, "\nnextact eval: %d cases of %d sessions (%s) from %s (%s)\n", d.Cases, d.Selected, d.Selection, d.Path, d.Format)
	for _, run := range r.Runs {
		fmt.Fprintf(w, "  %s: %s %s, model %s, format %s%s\n", run.Label, run.Mode, bench.HostOf(run.URL), run.Model, run.Format, map[bool]string{true: ", json schema"}[run.JSONSchema])
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name string, f func(m *Metrics) string) {
		cols := []string{name}
		for i := range r.Runs {
			cols = append(cols, f(&r.Runs[i].Metrics))
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	header := []string{""}
	for _, run := range r.Runs {
		header = append(header, run.Label)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	row("accuracy (per session, 95% CI)", func(m *Metrics) string { return withCI(m.Accuracy) })
	row("accuracy (micro)", func(m *Metrics) string {
		return fmt.Sprintf("%s (%d of %d)", withCI(m.MicroAccuracy), m.Correct, m.Cases)
	})
	row("outcome F1 (purchase)", func(m *Metrics) string { return withCI(m.Outcome.F1) })
	row("outcome macro F1", func(m *Metrics) string { return withCI(m.Outcome.MacroF1) })
	row("outcome tp/fp/fn/tn", func(m *Metrics) string {
		o := m.Outcome
		return fmt.Sprintf("%d/%d/%d/%d", o.TP, o.FP, o.FN, o.TN)
	})
	for _, t := range ActionTypes {
		row("accuracy on "+t, func(m *Metrics) string {
			ts := m.ByType[t]
			return fmt.Sprintf("%s of %d", pct(ts.Accuracy), ts.Cases)
		})
	}
	row("unparsed / invalid answers", func(m *Metrics) string { return fmt.Sprintf("%d / %d", m.Answers.Unparsed, m.Answers.Invalid) })
	row("failed / not sent", func(m *Metrics) string { return fmt.Sprintf("%d / %d", m.Answers.Failed, m.Answers.NotSent) })
	_ = tw.Flush()
	for _, run := range r.Runs {
		var parts []string
		for _, c := range ErrorCategories {
			if n := run.Metrics.Errors[c]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", c, n))
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "errors %s: %s\n", run.Label, strings.Join(parts, ", "))
		}
	}
	red := r.Reductions
	fmt.Fprintf(w, "pages: current page reduced in %d of %d cases (%s; to text %d, capped %d, truth element cut %d); history pages reduced %d, omitted %d; history steps dropped %d; not sent %d\n",
		red.CurrentPageReduced, red.Cases, pct(red.Share), red.PageText, red.PageCapped, red.TruthCut, red.HistoryPagesReduced, red.HistoryPagesOmitted, red.HistoryStepsDropped, red.NotSent)
	if c := r.Comparison; c != nil {
		stat := ""
		if c.McNemar.Statistic != nil {
			stat = fmt.Sprintf(", chi2 %.3f", *c.McNemar.Statistic)
		}
		fmt.Fprintf(w, "%s vs %s: %s only %d, %s only %d, both %d, neither %d; McNemar p = %.4g (%s%s); accuracy %s-%s %s\n",
			c.A, c.B, c.A, c.AOnly, c.B, c.BOnly, c.BothCorrect, c.Neither, c.McNemar.PValue, c.McNemar.Method, stat, c.A, c.B, signedCI(c.AccuracyDifference))
	}
}

func signedCI(v Value) string {
	if v.Value == nil {
		return "-"
	}
	s := fmt.Sprintf("%+.2f points", 100**v.Value)
	if v.CI95 != nil {
		s += fmt.Sprintf(" [%+.2f, %+.2f]", 100*v.CI95[0], 100*v.CI95[1])
	}
	return s
}
