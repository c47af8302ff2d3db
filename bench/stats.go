package bench

import (
	"math"
	"slices"
	"time"
)

// Outcome is how a step ended. Every step issued has exactly one.
type Outcome string

// The outcomes.
const (
	// OutcomeSuccess: a 2xx answer that was read to its end.
	OutcomeSuccess Outcome = "success"
	// OutcomeRejected: the target refused the step for load, with 429 or
	// 503.
	OutcomeRejected Outcome = "rejected"
	// OutcomeFailed: anything else (another status, a transport error, a
	// broken stream, the run's deadline).
	OutcomeFailed Outcome = "failed"
)

// unknown marks a duration or a token count the target did not report.
const unknown = -1

// StepRecord is one step issued to a target.
type StepRecord struct {
	Round, Session, Step int
	// Start is when the step was sent, since its run started.
	Start   time.Duration
	Outcome Outcome
	// Reason says why a step was rejected or failed: http_NNN, transport,
	// decode, stream_error, stream_truncated or cancelled (the run's
	// deadline).
	Reason string
	// Status is the HTTP status, 0 when there was none.
	Status int
	// Error is the error of a step that was not a success.
	Error string
	// E2E is the client-side time from sending the request to the end of
	// the answer.
	E2E time.Duration
	// TTFT and ITL are the time to first token and the mean inter-token
	// latency; unknown (-1) when not measured.
	TTFT, ITL time.Duration
	// Token counts from the answer's usage; unknown (-1) when not
	// reported.
	PromptTokens, CompletionTokens, CachedTokens int
	// Parsed tells that the answer held an action valid on the page; when
	// not, the shopper took a fallback action.
	Parsed bool
	// Overridden tells that a terminate answer was replaced by a fallback
	// action because the session had not taken its minimum of steps.
	Overridden bool
	// Action is the type of the action the shopper took ("" when none).
	Action string
	// PageKind is the kind of the step's page (results, product, cart,
	// checkout, confirmation).
	PageKind  string
	PageBytes int
}

// SLO is a latency objective per step; a zero field sets none.
type SLO struct {
	// TTFT bounds the time to first token.
	TTFT time.Duration
	// Step bounds the end-to-end latency of the step.
	Step time.Duration
}

// Met reports whether r succeeded and meets every objective. A step whose
// TTFT was not measured does not meet a TTFT objective.
func (o SLO) Met(r StepRecord) bool {
	if r.Outcome != OutcomeSuccess {
		return false
	}
	if o.TTFT > 0 && (r.TTFT < 0 || r.TTFT > o.TTFT) {
		return false
	}
	return o.Step <= 0 || r.E2E <= o.Step
}

// Goodput counts the steps that meet o and returns them per second of
// wall time (0 when wall is not positive). With no objectives it counts
// the successful steps.
func Goodput(recs []StepRecord, o SLO, wall time.Duration) (steps int, perSecond float64) {
	for _, r := range recs {
		if o.Met(r) {
			steps++
		}
	}
	return steps, rate(float64(steps), wall)
}

func rate(n float64, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return n / wall.Seconds()
}

// Percentile returns the q-quantile (q in [0, 1]) of sorted by linear
// interpolation between the closest ranks (numpy's default, Hyndman and
// Fan's type 7): rank h = q*(n-1). It returns NaN for no samples.
func Percentile(sorted []float64, q float64) float64 {
	n := len(sorted)
	switch {
	case n == 0:
		return math.NaN()
	case q <= 0:
		return sorted[0]
	case q >= 1:
		return sorted[n-1]
	}
	h := q * float64(n-1)
	lo := int(math.Floor(h))
	if lo+1 >= n {
		return sorted[n-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// Dist summarizes a latency distribution, in milliseconds.
type Dist struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean"`
	Min   float64 `json:"min"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Summarize returns the distribution of xs (milliseconds), nil for none.
func Summarize(xs []float64) *Dist {
	if len(xs) == 0 {
		return nil
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	return &Dist{
		Count: len(s), Mean: round3(sum / float64(len(s))), Min: round3(s[0]), Max: round3(s[len(s)-1]),
		P50: round3(Percentile(s, 0.5)), P90: round3(Percentile(s, 0.9)), P99: round3(Percentile(s, 0.99)),
	}
}

// round3 rounds to 3 decimals (microseconds, for milliseconds).
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// ms converts d to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
