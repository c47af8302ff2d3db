package bench

// Comparison is the ratio table of a --compare run: B over A, metric by
// metric.
type Comparison struct {
	// A and B are the labels of the runs compared (a: --url, b: --compare).
	A    string          `json:"a"`
	B    string          `json:"b"`
	Rows []ComparisonRow `json:"rows"`
}

// ComparisonRow is one metric of both runs. Ratio is B/A, null when
// either is missing or A is 0.
type ComparisonRow struct {
	Metric         string   `json:"metric"`
	A              *float64 `json:"a"`
	B              *float64 `json:"b"`
	Ratio          *float64 `json:"ratio"`
	HigherIsBetter bool     `json:"higher_is_better"`
}

// comparedMetric reads one metric of a run; ok is false when missing.
type comparedMetric struct {
	name   string
	higher bool
	get    func(r *RunReport) (float64, bool)
}

func always(f func(r *RunReport) float64) func(r *RunReport) (float64, bool) {
	return func(r *RunReport) (float64, bool) { return f(r), true }
}

func dist(pick func(l Latency) *Dist, q func(d *Dist) float64) func(r *RunReport) (float64, bool) {
	return func(r *RunReport) (float64, bool) {
		d := pick(r.LatencyMs)
		if d == nil {
			return 0, false
		}
		return q(d), true
	}
}

var (
	ttftOf = func(l Latency) *Dist { return l.TTFT }
	itlOf  = func(l Latency) *Dist { return l.ITL }
	e2eOf  = func(l Latency) *Dist { return l.E2E }
	p50    = func(d *Dist) float64 { return d.P50 }
	p90    = func(d *Dist) float64 { return d.P90 }
	p99    = func(d *Dist) float64 { return d.P99 }
)

// comparedMetrics are the rows of the ratio table, in order.
var comparedMetrics = []comparedMetric{
	{"steps_per_s", true, always(func(r *RunReport) float64 { return r.Throughput.StepsPerS })},
	{"goodput_steps_per_s", true, always(func(r *RunReport) float64 { return r.Goodput.StepsPerS })},
	{"sessions_per_s", true, always(func(r *RunReport) float64 { return r.Throughput.SessionsPerS })},
	{"input_tokens_per_s", true, always(func(r *RunReport) float64 { return r.Throughput.InputTokensPerS })},
	{"output_tokens_per_s", true, always(func(r *RunReport) float64 { return r.Throughput.OutputTokensPerS })},
	{"success_fraction", true, func(r *RunReport) (float64, bool) {
		if r.Steps.Issued == 0 {
			return 0, false
		}
		return round3(float64(r.Steps.Success) / float64(r.Steps.Issued)), true
	}},
	{"ttft_p50_ms", false, dist(ttftOf, p50)},
	{"ttft_p90_ms", false, dist(ttftOf, p90)},
	{"ttft_p99_ms", false, dist(ttftOf, p99)},
	{"itl_p50_ms", false, dist(itlOf, p50)},
	{"itl_p90_ms", false, dist(itlOf, p90)},
	{"e2e_p50_ms", false, dist(e2eOf, p50)},
	{"e2e_p90_ms", false, dist(e2eOf, p90)},
	{"e2e_p99_ms", false, dist(e2eOf, p99)},
	{"mean_prompt_tokens", false, func(r *RunReport) (float64, bool) {
		return r.Tokens.MeanPromptTokens, r.Tokens.StepsWithUsage > 0
	}},
	{"prefill_tokens", false, func(r *RunReport) (float64, bool) {
		if r.Tokens.Prefill == nil {
			return 0, false
		}
		return float64(*r.Tokens.Prefill), true
	}},
}

// Compare returns the ratio table of b over a.
func Compare(a, b *RunReport) *Comparison {
	c := &Comparison{A: a.Label, B: b.Label}
	for _, m := range comparedMetrics {
		row := ComparisonRow{Metric: m.name, HigherIsBetter: m.higher}
		va, okA := m.get(a)
		vb, okB := m.get(b)
		if okA {
			row.A = &va
		}
		if okB {
			row.B = &vb
		}
		if okA && okB && va != 0 {
			ratio := round3(vb / va)
			row.Ratio = &ratio
		}
		c.Rows = append(c.Rows, row)
	}
	return c
}
