package bench

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Mode is the API a target speaks.
type Mode string

// The target modes.
const (
	// ModeSessions is nextact's sessions API: POST /v1/sessions, then POST
	// /v1/sessions/{id}/steps with the page only, then DELETE.
	ModeSessions Mode = "sessions"
	// ModeActions is nextact's stateless POST /v1/actions/next, the
	// session's history resent with every step.
	ModeActions Mode = "actions"
	// ModeOpenAI is any OpenAI-compatible POST /v1/chat/completions,
	// streamed, with the prompt of nextaction.BuildPrompt (prompted format).
	ModeOpenAI Mode = "openai"
)

// ParseMode returns the mode named s.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case ModeSessions, ModeActions, ModeOpenAI:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q (valid: sessions, actions, openai)", s)
}

// The arrival kinds.
const (
	ArrivalBurst   = "burst"
	ArrivalPoisson = "poisson"
	ArrivalRamp    = "ramp"
)

// Arrival tells when sessions start: all at once (burst), as a Poisson
// process of Rate sessions per second, or evenly spread over Ramp.
type Arrival struct {
	Kind string
	Rate float64
	Ramp time.Duration
}

// ParseArrival parses burst, poisson:RATE (sessions per second) or
// ramp:SECONDS (a Go duration such as 30s is accepted too).
func ParseArrival(s string) (Arrival, error) {
	kind, arg, hasArg := strings.Cut(strings.TrimSpace(s), ":")
	switch strings.ToLower(kind) {
	case ArrivalBurst:
		if hasArg {
			return Arrival{}, fmt.Errorf("arrival %q: burst takes no argument", s)
		}
		return Arrival{Kind: ArrivalBurst}, nil
	case ArrivalPoisson:
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || !(r > 0) || math.IsInf(r, 0) {
			return Arrival{}, fmt.Errorf("arrival %q: want poisson:RATE with RATE > 0 sessions per second", s)
		}
		return Arrival{Kind: ArrivalPoisson, Rate: r}, nil
	case ArrivalRamp:
		d, err := parseSeconds(arg)
		if err != nil || d <= 0 {
			return Arrival{}, fmt.Errorf("arrival %q: want ramp:SECONDS with SECONDS > 0", s)
		}
		return Arrival{Kind: ArrivalRamp, Ramp: d}, nil
	}
	return Arrival{}, fmt.Errorf("unknown arrival %q (valid: burst, poisson:RATE, ramp:SECONDS)", s)
}

// parseSeconds reads a number of seconds or a Go duration.
func parseSeconds(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || f > 1e9 {
			return 0, errors.New("out of range")
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	return time.ParseDuration(s)
}

func (a Arrival) String() string {
	switch a.Kind {
	case ArrivalPoisson:
		return ArrivalPoisson + ":" + strconv.FormatFloat(a.Rate, 'g', -1, 64)
	case ArrivalRamp:
		return ArrivalRamp + ":" + strconv.FormatFloat(a.Ramp.Seconds(), 'g', -1, 64)
	}
	return ArrivalBurst
}

// Offsets returns when each of n sessions starts, relative to the run's
// start, in session order (non-decreasing). burst: all at 0. poisson:
// exponential gaps of mean 1/Rate drawn from rng, the first session at 0.
// ramp: session i at i*Ramp/n.
func (a Arrival) Offsets(n int, rng *rand.Rand) []time.Duration {
	out := make([]time.Duration, n)
	switch a.Kind {
	case ArrivalPoisson:
		var t float64
		for i := 1; i < n; i++ {
			t += rng.ExpFloat64() / a.Rate
			out[i] = time.Duration(t * float64(time.Second))
		}
	case ArrivalRamp:
		for i := range n {
			out[i] = time.Duration(float64(a.Ramp) * float64(i) / float64(n))
		}
	}
	return out
}

// Target is one server and how to talk to it.
type Target struct {
	// URL is the base the API paths are appended to, such as
	// http://127.0.0.1:8080.
	URL  string
	Mode Mode
	// Model is the model id; empty means the first id of GET /v1/models.
	// A comma-separated list of ids ("a,b") spreads the sessions over the
	// models in turn (session i takes the (i mod n)-th), so their requests
	// alternate: the cost of switching between models under load.
	Model string
}

// Config is a workload and the targets it is sent to.
type Config struct {
	Target Target
	// Compare, when its URL is set, gets the same seeded workload, run
	// alternately with Target (Rounds times each).
	Compare Target
	Rounds  int

	Sessions int
	// Steps is each session's step budget.
	Steps int
	// MinSteps makes sessions take at least this many steps: an earlier
	// terminate answer is replaced by a fallback action that continues.
	MinSteps int
	// PageTokens is the approximate size of a page, in tokens
	// (BytesPerToken bytes each).
	PageTokens int
	MaxTokens  int
	Seed       uint64
	// Format is the prompt format of the nextact modes (prompted,
	// finetuned; empty: the server's default). ModeOpenAI is always
	// prompted.
	Format      string
	Temperature float64
	// Personas gives every session a generated persona.
	Personas  bool
	Arrival   Arrival
	ThinkTime time.Duration
	SLO       SLO
	// Duration bounds the whole benchmark (every run and round).
	Duration time.Duration
	// Out is where report.json and report.html are written; empty: none.
	Out    string
	APIKey string
}

// Validate checks c's values.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Sessions >= 1 && c.Sessions <= 100000, "sessions must be in [1, 100000], got %d", c.Sessions)
	check(c.Steps >= 1 && c.Steps <= 1000, "steps must be in [1, 1000], got %d", c.Steps)
	check(c.MinSteps >= 0 && c.MinSteps <= c.Steps, "min-steps must be in [0, steps], got %d", c.MinSteps)
	check(c.PageTokens >= 50 && c.PageTokens <= 200000, "page-tokens must be in [50, 200000], got %d", c.PageTokens)
	check(c.MaxTokens >= 1, "max-tokens must be at least 1, got %d", c.MaxTokens)
	check(c.Temperature >= 0 && c.Temperature <= 2, "temperature must be in [0, 2], got %g", c.Temperature)
	check(c.Duration > 0, "duration must be positive, got %s", c.Duration)
	check(c.ThinkTime >= 0, "think-time must not be negative, got %s", c.ThinkTime)
	check(c.SLO.TTFT >= 0 && c.SLO.Step >= 0, "SLOs must not be negative")
	check(c.Arrival.Kind != "", "arrival is not set")
	check(c.Format == "" || c.Format == "prompted" || c.Format == "finetuned", "format must be prompted or finetuned, got %q", c.Format)
	errs = append(errs, c.Target.validate("url"))
	check(c.Format != "finetuned" || (c.Target.Mode != ModeOpenAI && c.Compare.Mode != ModeOpenAI),
		"format finetuned needs two turns per step: not supported in openai mode (use prompted)")
	if c.Compare.URL != "" {
		errs = append(errs, c.Compare.validate("compare"))
		check(c.Rounds >= 1 && c.Rounds <= 100, "rounds must be in [1, 100], got %d", c.Rounds)
	}
	return errors.Join(errs...)
}

func (t Target) validate(flag string) error {
	if err := CheckURL(flag, t.URL); err != nil {
		return err
	}
	if _, err := ParseMode(string(t.Mode)); err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	return nil
}
