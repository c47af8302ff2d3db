package eval

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nextact/nextact/bench"
	"github.com/nextact/nextact/nextaction/client"
)

// Config is an evaluation: data, targets, and how to ask them.
type Config struct {
	// Data is a JSONL file, a Parquet action file or a directory of
	// Parquet files; Split keeps one split of a directory.
	Data, Split string
	Target      TargetConfig
	// Compare, when its URL is set, is run on the same cases.
	Compare TargetConfig
	APIKey  string
	// Limit keeps the first Limit sessions with cases (by id); Sample
	// draws Sample of them with Seed. 0: all.
	Limit, Sample int
	// Seed seeds the sample, the bootstrap and each case's sampling seed.
	Seed   uint64
	Gen    GenOptions
	Budget Budget
	Run    RunOptions
	// Bootstrap is the number of bootstrap resamples (0: no intervals).
	Bootstrap int
	// Out is the directory of the results files and the reports.
	Out string
	// Restart discards results files written by an earlier run.
	Restart bool
}

// Validate checks c's values.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Data != "", "data is required")
	check(c.Out != "", "out is required")
	check(c.Split == "" || c.Split == "train" || c.Split == "test" || c.Split == "validation", "split must be train, test or validation, got %q", c.Split)
	check(c.Limit >= 0 && c.Sample >= 0, "limit and sample must not be negative")
	check(c.Limit == 0 || c.Sample == 0, "limit and sample exclude each other")
	check(c.Gen.MaxTokens >= 1 && c.Gen.MaxTokens <= 1<<20, "max-tokens must be in [1, 1048576], got %d", c.Gen.MaxTokens)
	check(c.Gen.Temperature >= 0 && c.Gen.Temperature <= 2, "temperature must be in [0, 2], got %g", c.Gen.Temperature)
	check(c.Budget.Ctx > c.Gen.MaxTokens && c.Budget.Ctx <= 1<<24, "ctx must be over max-tokens (%d) and at most 16777216, got %d", c.Gen.MaxTokens, c.Budget.Ctx)
	check(c.Budget.BytesPerToken >= 1 && c.Budget.BytesPerToken <= 16, "bytes-per-token must be in [1, 16], got %g", c.Budget.BytesPerToken)
	check(c.Budget.MaxPageBytes >= MinPageBytes && c.Budget.MaxPageBytes <= MaxPageBytes, "max-page-bytes must be in [%d, %d], got %d", MinPageBytes, MaxPageBytes, c.Budget.MaxPageBytes)
	check(c.Budget.MaxBodyBytes >= 64<<10, "max-body-bytes must be at least 65536, got %d", c.Budget.MaxBodyBytes)
	check(c.Budget.MaxPersonaBytes >= 0 && c.Budget.MaxPersonaBytes <= MaxFieldBytes, "max-persona-bytes must be in [0, %d], got %d", MaxFieldBytes, c.Budget.MaxPersonaBytes)
	check(c.Run.Concurrency >= 1 && c.Run.Concurrency <= 1024, "concurrency must be in [1, 1024], got %d", c.Run.Concurrency)
	check(c.Run.Retries >= 0 && c.Run.Retries <= 100, "retries must be in [0, 100], got %d", c.Run.Retries)
	check(c.Run.MaxRetryWait > 0, "max-retry-wait must be positive")
	check(c.Bootstrap >= 0 && c.Bootstrap <= 100000, "bootstrap must be in [0, 100000], got %d", c.Bootstrap)
	errs = append(errs, c.Target.validate("url"))
	if c.Compare.URL != "" {
		errs = append(errs, c.Compare.validate("compare"))
	}
	return errors.Join(errs...)
}

func (t TargetConfig) validate(flag string) error {
	if err := bench.CheckURL(flag, t.URL); err != nil {
		return err
	}
	switch {
	case t.Mode != ModeActions && t.Mode != ModeOpenAI:
		return fmt.Errorf("%s: mode %q (valid: actions, openai)", flag, t.Mode)
	case t.Mode == ModeActions && t.Format != "prompted" && t.Format != "finetuned":
		return fmt.Errorf("%s: format %q (valid: prompted, finetuned)", flag, t.Format)
	case t.Mode == ModeOpenAI && t.Format != "prompted":
		return fmt.Errorf("%s: format %q: openai mode asks in the prompted format", flag, t.Format)
	case t.Mode == ModeActions && t.JSONSchema:
		return fmt.Errorf("%s: json-schema applies to openai mode (actions are always constrained)", flag)
	}
	return nil
}

// Deps is what a run takes from its environment.
type Deps struct {
	// HTTP sends every request; nil: client.NewHTTPClient.
	HTTP *http.Client
	// Now is the clock; nil: time.Now. Sleep waits between retries; nil:
	// a timer.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// Out receives the summary; Progress the progress (on a terminal when
	// Terminal); nil: nothing printed.
	Out, Progress io.Writer
	Terminal      bool
	Version       string
}

// ErrInterrupted wraps the error of a run stopped before every case had
// a result; its results are kept and the same command resumes.
var ErrInterrupted = errors.New("interrupted")

// Run evaluates cfg: it loads the data, asks the target (and the compare
// target) every case not yet in its results file, appending each result
// as it arrives, then computes the metrics from the results files, prints
// the summary and writes report.json and report.html into cfg.Out. A run
// stopped early (ctx ended, the target failing every case) returns an
// error wrapping ErrInterrupted.
func Run(ctx context.Context, cfg Config, deps Deps) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Budget.MaxTokens = cfg.Gen.MaxTokens
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Sleep == nil {
		deps.Sleep = sleepCtx
	}
	if deps.HTTP == nil {
		deps.HTTP = client.NewHTTPClient(cfg.Run.Concurrency)
		defer deps.HTTP.CloseIdleConnections()
	}
	started := deps.Now()
	d, err := Load(cfg.Data, cfg.Split)
	if err != nil {
		return nil, err
	}
	sel, selection := selectSessions(d, cfg)
	cases := (&Dataset{Sessions: sel}).Cases()
	if len(cases) == 0 {
		return nil, errors.New("the data has no cases (sessions of two steps or more with pages)")
	}
	purchase := d.PurchaseNames()
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}
	targets := []TargetConfig{cfg.Target}
	if cfg.Compare.URL != "" {
		targets = append(targets, cfg.Compare)
	}
	for i := range targets {
		if err := resolveModel(ctx, &targets[i], cfg.APIKey, deps.HTTP); err != nil {
			return nil, err
		}
	}
	rep := &Report{SchemaVersion: SchemaVersion, Tool: "nextact eval", Version: deps.Version, StartedAt: started.UTC().Format(time.RFC3339),
		Data: dataReport(cfg, d, sel, selection, len(cases), len(purchase)), Config: configReport(cfg)}
	prep := NewPreparer(cfg.Budget) // shared: every target gets the same inputs
	dataFP := fingerprintData(d)
	var scored [][]Scored
	for i, t := range targets {
		label := string(rune('a' + i))
		results, stats, err := runTarget(ctx, cfg, deps, t, label, dataFP, prep, cases)
		if err != nil {
			return nil, err
		}
		sc := make([]Scored, len(cases))
		for k := range cases {
			var r *Result
			if res, ok := results[cases[k].ID]; ok {
				r = &res
			}
			sc[k] = Score(&cases[k], r, purchase)
		}
		scored = append(scored, sc)
		rep.Runs = append(rep.Runs, RunReport{Label: label, URL: t.URL, Mode: t.Mode, Model: t.Model, Format: t.Format, JSONSchema: t.JSONSchema,
			Metrics: Aggregate(sc, cfg.Bootstrap, cfg.Seed), Run: runInfo(stats, len(cases))})
		if i == 0 {
			var rs []Result
			for _, c := range cases {
				rs = append(rs, results[c.ID])
			}
			rep.Reductions = reductions(rs)
		}
	}
	if len(rep.Runs) == 2 {
		rep.Comparison = compare(&rep.Runs[0], &rep.Runs[1], scored[0], scored[1], cfg.Bootstrap, cfg.Seed)
	}
	if err := rep.WriteFiles(cfg.Out); err != nil {
		return rep, fmt.Errorf("write report: %w", err)
	}
	if deps.Out != nil {
		rep.WriteSummary(deps.Out)
		fmt.Fprintf(deps.Out, "wrote %s and %s\n", filepath.Join(cfg.Out, "report.json"), filepath.Join(cfg.Out, "report.html"))
	}
	return rep, nil
}

// runTarget runs one target over the cases and returns every case's
// result (from its results file, resumed or new).
func runTarget(ctx context.Context, cfg Config, deps Deps, t TargetConfig, label, dataFP string, prep *Preparer, cases []Case) (map[string]Result, RunStats, error) {
	path := filepath.Join(cfg.Out, "results-"+label+".jsonl")
	desc := struct {
		Target TargetConfig `json:"target"`
		Gen    GenOptions   `json:"gen"`
		Budget Budget       `json:"budget"`
		Seed   uint64       `json:"seed"`
		Data   string       `json:"data"`
	}{t, cfg.Gen, cfg.Budget, cfg.Seed, dataFP}
	raw, _ := json.Marshal(desc)
	sum := sha256.Sum256(raw)
	rf, err := OpenResults(path, hex.EncodeToString(sum[:]), desc, cfg.Restart)
	if err != nil {
		return nil, RunStats{}, err
	}
	defer rf.Close()
	prog := newProgress(label, len(cases), deps.Now())
	r := &runner{t: NewTarget(t, cfg.Gen, deps.HTTP, cfg.APIKey), prep: prep, rf: rf, opts: cfg.Run, deps: deps, prog: prog}
	stop := startProgress(deps.Progress, deps.Terminal, deps.Now, prog)
	stats, err := r.run(ctx, cases)
	stop()
	if err != nil {
		return nil, stats, fmt.Errorf("%w: %s: %d of %d cases have results in %s; the same command resumes: %w", ErrInterrupted, label, len(rf.Done()), len(cases), path, err)
	}
	return rf.Done(), stats, nil
}

// selectSessions picks the sessions with cases that are evaluated.
func selectSessions(d *Dataset, cfg Config) ([]Session, string) {
	var with []Session
	for _, s := range d.Sessions {
		if s.hasCases() {
			with = append(with, s)
		}
	}
	switch {
	case cfg.Limit > 0 && cfg.Limit < len(with):
		return with[:cfg.Limit], fmt.Sprintf("the first %d sessions by id (--limit)", cfg.Limit)
	case cfg.Sample > 0 && cfg.Sample < len(with):
		idx := rand.New(rand.NewPCG(cfg.Seed, 0x5a3e)).Perm(len(with))[:cfg.Sample]
		slices.Sort(idx)
		out := make([]Session, len(idx))
		for i, k := range idx {
			out[i] = with[k]
		}
		return out, fmt.Sprintf("%d sessions sampled with seed %d (--sample)", cfg.Sample, cfg.Seed)
	}
	return with, "all sessions with cases"
}

// fingerprintData hashes everything of d a result depends on.
func fingerprintData(d *Dataset) string {
	h := sha256.New()
	var n [8]byte
	put := func(s string) {
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	for _, s := range d.Sessions {
		put(s.ID)
		put(s.Persona)
		for _, st := range s.Steps {
			put(st.Page)
			put(st.Action.JSON())
			put(st.ClickType)
			put(st.Rationale)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// resolveModel sets t.Model to the first id of GET /v1/models when empty.
func resolveModel(ctx context.Context, t *TargetConfig, apiKey string, h *http.Client) error {
	if t.Model != "" {
		return nil
	}
	m, err := client.New(t.URL, client.WithHTTPClient(h), client.WithAPIKey(apiKey)).DefaultModel(ctx)
	t.Model = m
	return err
}

func dataReport(cfg Config, d *Dataset, sel []Session, selection string, cases, purchase int) DataReport {
	with := 0
	for _, s := range d.Sessions {
		if s.hasCases() {
			with++
		}
	}
	dropped := d.Dropped
	if dropped == nil {
		dropped = map[string]int{}
	}
	files := d.Files
	if files == nil {
		files = []string{}
	}
	return DataReport{Path: cfg.Data, Format: d.Format, Files: files, Rows: d.Rows, Dropped: dropped, Sessions: len(d.Sessions),
		SessionsWithCases: with, Selection: selection, Selected: len(sel), Cases: cases, PurchaseNames: purchase}
}

func configReport(cfg Config) ConfigReport {
	b := cfg.Budget
	return ConfigReport{MaxTokens: cfg.Gen.MaxTokens, Temperature: cfg.Gen.Temperature, Seed: cfg.Seed, Ctx: b.Ctx, BytesPerToken: b.BytesPerToken,
		MaxPageBytes: b.MaxPageBytes, MaxPersonaBytes: b.MaxPersonaBytes, MaxBodyBytes: b.MaxBodyBytes, Rationales: b.Rationales, Bootstrap: cfg.Bootstrap}
}

func runInfo(s RunStats, cases int) RunInfo {
	ri := RunInfo{WallS: round3(s.Wall.Seconds()), Resumed: s.Resumed, Requests: s.Requests, Retries: s.Retries,
		LatencyMs: bench.Summarize(s.Latencies), PromptTokens: s.PromptTokens, CompletionTokens: s.CompletionTokens}
	if s.Wall > 0 {
		ri.CasesPerS = round3(float64(cases-s.Resumed) / s.Wall.Seconds())
	}
	return ri
}

func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }
