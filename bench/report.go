package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"
)

// SchemaVersion is the version of report.json's schema (docs/BENCH.md). It
// changes only when a field is removed, renamed or changes meaning; added
// fields keep it.
const SchemaVersion = 1

// Report is report.json.
type Report struct {
	SchemaVersion int          `json:"schema_version"`
	Tool          string       `json:"tool"`
	Version       string       `json:"version"`
	StartedAt     string       `json:"started_at"`
	Config        ReportConfig `json:"config"`
	Runs          []RunReport  `json:"runs"`
	Comparison    *Comparison  `json:"comparison"`
}

// ReportConfig is the workload, as run.
type ReportConfig struct {
	Sessions    int      `json:"sessions"`
	Steps       int      `json:"steps"`
	MinSteps    int      `json:"min_steps"`
	PageTokens  int      `json:"page_tokens"`
	PageBytes   int      `json:"page_bytes"`
	MaxTokens   int      `json:"max_tokens"`
	Seed        uint64   `json:"seed"`
	Format      string   `json:"format"`
	Temperature float64  `json:"temperature"`
	Personas    bool     `json:"personas"`
	Arrival     string   `json:"arrival"`
	ThinkTimeMs float64  `json:"think_time_ms"`
	SLOTTFTMs   *float64 `json:"slo_ttft_ms"`
	SLOStepMs   *float64 `json:"slo_step_ms"`
	DurationS   float64  `json:"duration_s"`
	Rounds      int      `json:"rounds"`
}

// RunReport is everything measured on one target, over all its rounds.
type RunReport struct {
	Label  string `json:"label"`
	URL    string `json:"url"`
	Mode   string `json:"mode"`
	Model  string `json:"model"`
	Rounds int    `json:"rounds"`
	// WallS is the sum over rounds of the time from a round's start to
	// the end of its last step.
	WallS             float64       `json:"wall_s"`
	StoppedByDeadline bool          `json:"stopped_by_deadline"`
	TTFTSource        string        `json:"ttft_source"`
	ITLSource         string        `json:"itl_source"`
	Steps             StepCounts    `json:"steps"`
	Sessions          SessionCounts `json:"sessions"`
	Throughput        Throughput    `json:"throughput"`
	Tokens            Tokens        `json:"tokens"`
	LatencyMs         Latency       `json:"latency_ms"`
	Goodput           GoodputReport `json:"goodput"`
	Samples           []Sample      `json:"samples"`
}

// StepCounts counts steps by outcome: Success + Rejected + Failed ==
// Issued.
type StepCounts struct {
	Issued   int `json:"issued"`
	Success  int `json:"success"`
	Rejected int `json:"rejected"`
	Failed   int `json:"failed"`
	// Unparsed counts successful steps whose answer held no action valid
	// on the page (the shopper took a fallback action).
	Unparsed int `json:"unparsed"`
	// Overridden counts terminate answers replaced by a fallback action
	// that continues (Config.MinSteps).
	Overridden int `json:"overridden"`
	// Reasons counts rejected and failed steps by reason.
	Reasons map[string]int `json:"reasons"`
	// Examples holds the first error message of each reason.
	Examples map[string]string `json:"examples"`
	// Actions counts the actions taken after successful steps, by type.
	Actions map[string]int `json:"actions"`
}

// SessionCounts counts sessions by how they ended.
type SessionCounts struct {
	Total      int `json:"total"`
	Started    int `json:"started"`
	Finished   int `json:"finished"`
	Terminated int `json:"terminated"`
	StepBudget int `json:"step_budget"`
	Aborted    int `json:"aborted"`
	Cancelled  int `json:"cancelled"`
	NotStarted int `json:"not_started"`
	Purchased  int `json:"purchased"`
	Ordered    int `json:"ordered"`
}

// Throughput is per second of wall time.
type Throughput struct {
	StepsPerS        float64 `json:"steps_per_s"`
	SessionsPerS     float64 `json:"sessions_per_s"`
	InputTokensPerS  float64 `json:"input_tokens_per_s"`
	OutputTokensPerS float64 `json:"output_tokens_per_s"`
}

// Tokens sums the usage of successful steps that reported one.
type Tokens struct {
	StepsWithUsage   int     `json:"steps_with_usage"`
	Prompt           int     `json:"prompt"`
	Completion       int     `json:"completion"`
	MeanPromptTokens float64 `json:"mean_prompt_tokens"`
	// Cached and Prefill (prompt minus cached) are null when the target
	// never reported cached tokens.
	Cached  *int `json:"cached"`
	Prefill *int `json:"prefill"`
}

// Latency holds the distributions over successful steps; null when no
// step measured one.
type Latency struct {
	TTFT *Dist `json:"ttft"`
	ITL  *Dist `json:"itl"`
	E2E  *Dist `json:"e2e"`
}

// GoodputReport is the steps that met the SLOs.
type GoodputReport struct {
	SLOTTFTMs *float64 `json:"slo_ttft_ms"`
	SLOStepMs *float64 `json:"slo_step_ms"`
	Steps     int      `json:"steps"`
	StepsPerS float64  `json:"steps_per_s"`
	// Fraction is Steps over the steps issued.
	Fraction float64 `json:"fraction"`
}

// Sample is one step.
type Sample struct {
	Round            int      `json:"round"`
	Session          int      `json:"session"`
	Step             int      `json:"step"`
	TS               float64  `json:"t_s"`
	Outcome          string   `json:"outcome"`
	Reason           string   `json:"reason"`
	Error            string   `json:"error"`
	Status           int      `json:"status"`
	E2EMs            float64  `json:"e2e_ms"`
	TTFTMs           *float64 `json:"ttft_ms"`
	ITLMs            *float64 `json:"itl_ms"`
	PromptTokens     *int     `json:"prompt_tokens"`
	CompletionTokens *int     `json:"completion_tokens"`
	CachedTokens     *int     `json:"cached_tokens"`
	Parsed           bool     `json:"parsed"`
	Action           string   `json:"action"`
	PageKind         string   `json:"page_kind"`
	PageBytes        int      `json:"page_bytes"`
}

// Where TTFT and ITL come from.
const (
	SourceServerTiming = "server_timing"
	SourceClientStream = "client_stream"
)

// NewRunReport summarizes the rounds of one target.
func NewRunReport(label string, t Target, rounds []*RunResult, slo SLO) RunReport {
	rr := RunReport{Label: label, URL: t.URL, Mode: string(t.Mode), Model: t.Model, Rounds: len(rounds),
		TTFTSource: SourceServerTiming, ITLSource: SourceServerTiming, Samples: []Sample{}}
	if t.Mode == ModeOpenAI {
		rr.TTFTSource, rr.ITLSource = SourceClientStream, SourceClientStream
	}
	var wall time.Duration
	var steps []StepRecord
	for _, r := range rounds {
		wall += r.Wall
		rr.StoppedByDeadline = rr.StoppedByDeadline || r.Deadline
		steps = append(steps, r.Steps...)
		rr.Sessions.add(r.Sessions)
	}
	rr.WallS = round3(wall.Seconds())
	rr.Steps = countSteps(steps)
	rr.Tokens = sumTokens(steps)
	rr.Throughput = Throughput{
		StepsPerS:        round3(rate(float64(rr.Steps.Success), wall)),
		SessionsPerS:     round3(rate(float64(rr.Sessions.Finished), wall)),
		InputTokensPerS:  round3(rate(float64(rr.Tokens.Prompt), wall)),
		OutputTokensPerS: round3(rate(float64(rr.Tokens.Completion), wall)),
	}
	rr.LatencyMs = latencies(steps)
	n, per := Goodput(steps, slo, wall)
	rr.Goodput = GoodputReport{SLOTTFTMs: optMs(slo.TTFT), SLOStepMs: optMs(slo.Step), Steps: n, StepsPerS: round3(per)}
	if len(steps) > 0 {
		rr.Goodput.Fraction = round3(float64(n) / float64(len(steps)))
	}
	for _, s := range steps {
		rr.Samples = append(rr.Samples, sampleOf(s))
	}
	return rr
}

func (c *SessionCounts) add(ss []SessionRecord) {
	for _, s := range ss {
		c.Total++
		switch s.End {
		case EndTerminated:
			c.Terminated++
		case EndBudget:
			c.StepBudget++
		case EndAborted:
			c.Aborted++
		case EndCancelled:
			c.Cancelled++
		case EndNotStarted:
			c.NotStarted++
		}
		if s.Purchased {
			c.Purchased++
		}
		if s.Ordered {
			c.Ordered++
		}
	}
	c.Started = c.Total - c.NotStarted
	c.Finished = c.Terminated + c.StepBudget
}

func countSteps(steps []StepRecord) StepCounts {
	c := StepCounts{Issued: len(steps), Reasons: map[string]int{}, Examples: map[string]string{}, Actions: map[string]int{}}
	for _, s := range steps {
		switch s.Outcome {
		case OutcomeSuccess:
			c.Success++
			if !s.Parsed {
				c.Unparsed++
			}
			if s.Overridden {
				c.Overridden++
			}
			c.Actions[s.Action]++
			continue
		case OutcomeRejected:
			c.Rejected++
		default:
			c.Failed++
		}
		c.Reasons[s.Reason]++
		if _, ok := c.Examples[s.Reason]; !ok {
			c.Examples[s.Reason] = s.Error
		}
	}
	return c
}

func sumTokens(steps []StepRecord) Tokens {
	var t Tokens
	cached, sawCached := 0, false
	for _, s := range steps {
		if s.Outcome != OutcomeSuccess || s.PromptTokens < 0 {
			continue
		}
		t.StepsWithUsage++
		t.Prompt += s.PromptTokens
		t.Completion += max(0, s.CompletionTokens)
		if s.CachedTokens >= 0 {
			cached += s.CachedTokens
			sawCached = true
		}
	}
	if t.StepsWithUsage > 0 {
		t.MeanPromptTokens = round3(float64(t.Prompt) / float64(t.StepsWithUsage))
	}
	if sawCached {
		prefill := t.Prompt - cached
		t.Cached, t.Prefill = &cached, &prefill
	}
	return t
}

func latencies(steps []StepRecord) Latency {
	var ttft, itl, e2e []float64
	for _, s := range steps {
		if s.Outcome != OutcomeSuccess {
			continue
		}
		e2e = append(e2e, ms(s.E2E))
		if s.TTFT >= 0 {
			ttft = append(ttft, ms(s.TTFT))
		}
		if s.ITL >= 0 {
			itl = append(itl, ms(s.ITL))
		}
	}
	return Latency{TTFT: Summarize(ttft), ITL: Summarize(itl), E2E: Summarize(e2e)}
}

func sampleOf(s StepRecord) Sample {
	out := Sample{
		Round: s.Round, Session: s.Session, Step: s.Step, TS: round3(s.Start.Seconds()), Outcome: string(s.Outcome),
		Reason: s.Reason, Error: s.Error, Status: s.Status, E2EMs: round3(ms(s.E2E)), TTFTMs: optDur(s.TTFT), ITLMs: optDur(s.ITL),
		PromptTokens: optInt(s.PromptTokens), CompletionTokens: optInt(s.CompletionTokens), CachedTokens: optInt(s.CachedTokens),
		Parsed: s.Parsed, Action: s.Action, PageKind: s.PageKind, PageBytes: s.PageBytes,
	}
	return out
}

func optDur(d time.Duration) *float64 {
	if d < 0 {
		return nil
	}
	v := round3(ms(d))
	return &v
}

// optMs is d in ms, nil for no objective (0).
func optMs(d time.Duration) *float64 {
	if d <= 0 {
		return nil
	}
	return optDur(d)
}

func optInt(n int) *int {
	if n < 0 {
		return nil
	}
	return &n
}

// WriteFiles writes report.json and report.html into dir, creating it.
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
