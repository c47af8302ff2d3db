package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the report as text: the workload, one block per run,
// and the ratio table when there is a comparison.
func (r *Report) WriteTable(w io.Writer) error {
	c := r.Config
	minSteps := ""
	if c.MinSteps > 0 {
		minSteps = fmt.Sprintf(" (at least %d)", c.MinSteps)
	}
	fmt.Fprintf(w, "\nnextact bench: %d sessions x %d steps%s, pages ~%d tokens (%d bytes), max_tokens %d, arrival %s, seed %d\n",
		c.Sessions, c.Steps, minSteps, c.PageTokens, c.PageBytes, c.MaxTokens, c.Arrival, c.Seed)
	for i := range r.Runs {
		writeRun(w, &r.Runs[i])
	}
	if r.Comparison != nil {
		writeComparison(w, r.Comparison)
	}
	_, err := fmt.Fprintln(w)
	return err
}

func writeRun(w io.Writer, rr *RunReport) {
	s, ss, tp := rr.Steps, rr.Sessions, rr.Throughput
	fmt.Fprintf(w, "\nrun %s: %s %s, model %s (%d round(s), %.1f s%s)\n", rr.Label, rr.Mode, rr.URL, rr.Model, rr.Rounds, rr.WallS, deadlineNote(rr))
	fmt.Fprintf(w, "  steps     %d issued: %d success, %d rejected, %d failed%s; %d unparsed\n",
		s.Issued, s.Success, s.Rejected, s.Failed, countsNote(s.Reasons), s.Unparsed)
	for _, k := range slices.Sorted(maps.Keys(s.Examples)) {
		if msg := s.Examples[k]; msg != "" {
			fmt.Fprintf(w, "            %s, e.g.: %s\n", k, msg)
		}
	}
	fmt.Fprintf(w, "  sessions  %d: %d finished (%d terminated, %d step budget), %d aborted, %d cancelled, %d not started; %d purchased\n",
		ss.Total, ss.Finished, ss.Terminated, ss.StepBudget, ss.Aborted, ss.Cancelled, ss.NotStarted, ss.Purchased)
	fmt.Fprintf(w, "  rate      %.2f steps/s, %.3f sessions/s (%.1f sessions finished a minute), goodput %.2f steps/s (%.1f%% of steps%s)\n",
		tp.StepsPerS, tp.SessionsPerS, 60*tp.SessionsPerS, rr.Goodput.StepsPerS, 100*rr.Goodput.Fraction, sloNote(rr.Goodput))
	t := rr.Tokens
	cached := "not reported"
	if t.Cached != nil {
		cached = group(*t.Cached)
	}
	fmt.Fprintf(w, "  tokens    in %s (mean %.0f/step, cached %s), out %s: %.0f in tok/s, %.1f out tok/s\n",
		group(t.Prompt), t.MeanPromptTokens, cached, group(t.Completion), tp.InputTokensPerS, tp.OutputTokensPerS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  latency ms\tp50\tp90\tp99\tmean\tn\t")
	for _, l := range []struct {
		name, source string
		d            *Dist
	}{{"ttft", rr.TTFTSource, rr.LatencyMs.TTFT}, {"itl", rr.ITLSource, rr.LatencyMs.ITL}, {"e2e", "client", rr.LatencyMs.E2E}} {
		if l.d == nil {
			fmt.Fprintf(tw, "  %s\t-\t-\t-\t-\t0\t  (%s)\n", l.name, l.source)
			continue
		}
		fmt.Fprintf(tw, "  %s\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t  (%s)\n", l.name, l.d.P50, l.d.P90, l.d.P99, l.d.Mean, l.d.Count, l.source)
	}
	tw.Flush()
}

func deadlineNote(rr *RunReport) string {
	if rr.StoppedByDeadline {
		return ", stopped by --duration"
	}
	return ""
}

func sloNote(g GoodputReport) string {
	var parts []string
	if g.SLOTTFTMs != nil {
		parts = append(parts, fmt.Sprintf("ttft <= %gms", *g.SLOTTFTMs))
	}
	if g.SLOStepMs != nil {
		parts = append(parts, fmt.Sprintf("step <= %gms", *g.SLOStepMs))
	}
	if len(parts) == 0 {
		return ", no SLO set"
	}
	return " within " + strings.Join(parts, " and ")
}

// countsNote renders a reason count map as " (a 1, b 2)", sorted.
func countsNote(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// group writes n with thousands separators.
func group(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + group(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func writeComparison(w io.Writer, c *Comparison) {
	fmt.Fprintf(w, "\ncomparison (%s / %s)\n", c.B, c.A)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  metric\t%s\t%s\t%s/%s\t\n", c.A, c.B, c.B, c.A)
	for _, r := range c.Rows {
		better := "lower is better"
		if r.HigherIsBetter {
			better = "higher is better"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t  %s\n", r.Metric, optF(r.A, 2), optF(r.B, 2), optF(r.Ratio, 3), better)
	}
	tw.Flush()
}

func optF(x *float64, prec int) string {
	if x == nil {
		return "-"
	}
	return strconv.FormatFloat(*x, 'f', prec, 64)
}
