package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nextact/nextact/nextaction/client"
)

// Deps is what a benchmark takes from its environment.
type Deps struct {
	// HTTP sends every request; nil: NewHTTPClient(Config.Sessions).
	HTTP *http.Client
	// Now is the clock of every timestamp; nil: time.Now.
	Now func() time.Time
	// Out receives the progress and the final table; nil: nothing printed.
	Out io.Writer
	// Terminal makes the progress rewrite one line in place instead of
	// printing plain lines.
	Terminal bool
	// ProgressEvery is how often progress is printed; 0: every second on
	// a terminal, every 5 seconds otherwise; negative: never.
	ProgressEvery time.Duration
	// Version is the tool's version, for the report.
	Version string
}

// NewHTTPClient returns a client for n concurrent sessions: see
// client.NewHTTPClient (no redirects, no proxy, idle connections closed
// before common servers close them, a request whose reused connection
// closed before any answer resent once more).
func NewHTTPClient(n int) *http.Client { return client.NewHTTPClient(n) }

// Bench runs cfg's workload against cfg.Target and, when cfg.Compare.URL is
// set, against cfg.Compare too, alternately (a, b, a, b, ... for
// cfg.Rounds rounds), all within cfg.Duration: each run gets an equal
// share of the time left when it starts and is cut off at its end. It
// prints progress and the table to deps.Out and writes report.json and
// report.html into cfg.Out when set. The error is for what prevents a
// benchmark (bad config, no model, a report that cannot be written);
// failed steps are in the report.
func Bench(ctx context.Context, cfg Config, deps Deps) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.HTTP == nil {
		deps.HTTP = NewHTTPClient(cfg.Sessions)
		defer deps.HTTP.CloseIdleConnections()
	}
	started := deps.Now()
	// Keep a little of the duration for writing the report.
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration-min(2*time.Second, cfg.Duration/10))
	defer cancel()
	targets := []Target{cfg.Target}
	if cfg.Compare.URL != "" {
		targets = append(targets, cfg.Compare)
	} else {
		cfg.Rounds = 1
	}
	for i := range targets {
		if err := resolveModel(ctx, &targets[i], cfg.APIKey, deps.HTTP); err != nil {
			return nil, err
		}
	}
	results := runAll(ctx, cfg, targets, deps)
	rep := newReport(cfg, started, deps.Version)
	for i, t := range targets {
		rep.Runs = append(rep.Runs, NewRunReport(label(i), t, results[i], cfg.SLO))
	}
	if len(rep.Runs) == 2 {
		rep.Comparison = Compare(&rep.Runs[0], &rep.Runs[1])
	}
	if deps.Out != nil {
		if err := rep.WriteTable(deps.Out); err != nil {
			return rep, err
		}
	}
	if cfg.Out != "" {
		if err := rep.WriteFiles(cfg.Out); err != nil {
			return rep, fmt.Errorf("write report: %w", err)
		}
		if deps.Out != nil {
			fmt.Fprintf(deps.Out, "wrote %s/report.json and %s/report.html\n", strings.TrimRight(cfg.Out, "/"), strings.TrimRight(cfg.Out, "/"))
		}
	}
	return rep, nil
}

// label names target i: a for --url, b for --compare.
func label(i int) string { return string(rune('a' + i)) }

// resolveModel sets t.Model to the first id of GET /v1/models when empty.
func resolveModel(ctx context.Context, t *Target, apiKey string, h *http.Client) error {
	if t.Model != "" {
		return nil
	}
	m, err := client.New(t.URL, client.WithHTTPClient(h), client.WithAPIKey(apiKey)).DefaultModel(ctx)
	t.Model = m
	return err
}

// runAll runs every round of every target, alternating, and returns the
// results by target.
func runAll(ctx context.Context, cfg Config, targets []Target, deps Deps) [][]*RunResult {
	store := NewStore(cfg.Seed, cfg.PageTokens*BytesPerToken)
	backends := make([]Backend, len(targets))
	for i, t := range targets {
		backends[i] = newBackend(t, cfg, deps.HTTP, deps.Now)
	}
	results := make([][]*RunResult, len(targets))
	left := cfg.Rounds * len(targets)
	for round := 1; round <= cfg.Rounds; round++ {
		for i, t := range targets {
			share := time.Until(deadlineOf(ctx)) / time.Duration(left)
			left--
			rctx, cancel := context.WithTimeout(ctx, max(share, 0))
			spec := RunSpec{
				Label: label(i), Round: round, Sessions: cfg.Sessions, Steps: cfg.Steps, MinSteps: cfg.MinSteps,
				Seed: cfg.Seed, Personas: cfg.Personas, Arrival: cfg.Arrival, ThinkTime: cfg.ThinkTime, KeepHistory: t.Mode != ModeSessions,
			}
			if deps.Out != nil {
				fmt.Fprintf(deps.Out, "run %s (round %d/%d): %s %s, model %s\n", spec.Label, round, cfg.Rounds, t.Mode, t.URL, t.Model)
			}
			prog := NewProgress(spec.Label, spec.Sessions, deps.Now())
			stop := startProgress(deps.Out, deps.Terminal, progressEvery(deps), deps.Now, prog)
			results[i] = append(results[i], Run(rctx, spec, backends[i], store, deps.Now, prog))
			stop()
			cancel()
		}
	}
	return results
}

func deadlineOf(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(time.Hour)
	}
	return d
}

func progressEvery(d Deps) time.Duration {
	switch {
	case d.ProgressEvery != 0:
		return d.ProgressEvery
	case d.Terminal:
		return time.Second
	}
	return 5 * time.Second
}

func newBackend(t Target, cfg Config, h *http.Client, now func() time.Time) Backend {
	opts := requestOptions{Model: t.Model, Format: cfg.Format, MaxTokens: cfg.MaxTokens, Temperature: cfg.Temperature, Seed: cfg.Seed}
	base := strings.TrimRight(t.URL, "/")
	switch t.Mode {
	case ModeActions:
		return &actionsBackend{c: client.New(base, client.WithHTTPClient(h), client.WithAPIKey(cfg.APIKey)), opts: opts}
	case ModeSessions:
		return &sessionsBackend{h: h, base: base, apiKey: cfg.APIKey, opts: opts}
	}
	return &openaiBackend{h: h, base: base, apiKey: cfg.APIKey, opts: opts, now: now}
}

func newReport(cfg Config, started time.Time, version string) *Report {
	return &Report{
		SchemaVersion: SchemaVersion, Tool: "nextact bench", Version: version, StartedAt: started.UTC().Format(time.RFC3339),
		Config: ReportConfig{
			Sessions: cfg.Sessions, Steps: cfg.Steps, MinSteps: cfg.MinSteps, PageTokens: cfg.PageTokens, PageBytes: cfg.PageTokens * BytesPerToken,
			MaxTokens: cfg.MaxTokens, Seed: cfg.Seed, Format: cfg.Format, Temperature: cfg.Temperature, Personas: cfg.Personas,
			Arrival: cfg.Arrival.String(), ThinkTimeMs: round3(ms(cfg.ThinkTime)), SLOTTFTMs: optMs(cfg.SLO.TTFT),
			SLOStepMs: optMs(cfg.SLO.Step), DurationS: cfg.Duration.Seconds(), Rounds: cfg.Rounds,
		},
		Runs: []RunReport{},
	}
}

// ErrNoSuccess is returned by callers that treat a benchmark in which no
// step succeeded as a failure.
var ErrNoSuccess = errors.New("no step succeeded")

// Succeeded reports whether any step of any run succeeded.
func (r *Report) Succeeded() bool {
	for _, rr := range r.Runs {
		if rr.Steps.Success > 0 {
			return true
		}
	}
	return false
}
