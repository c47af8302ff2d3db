package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/nextact/nextact/bench"
)

// benchEnvPrefix prefixes the environment variables of `nextact bench`:
// NEXTACT_BENCH_<FLAG>, so that serve's NEXTACT_MODEL or NEXTACT_ADDR never
// leak into a benchmark.
const benchEnvPrefix = "NEXTACT_BENCH_"

// benchFlags are the raw flags of `nextact bench`.
type benchFlags struct {
	url, mode, model                      string
	compare, compareMode, compareModel    string
	arrival, format, out, apiKey          string
	sessions, steps, minSteps, pageTokens int
	maxTokens                             int
	rounds                                int
	seed                                  uint64
	temperature                           float64
	personas                              bool
	thinkTime, sloTTFT, sloStep, duration time.Duration
}

// parseBench reads bench's flags, with NEXTACT_BENCH_<FLAG> environment
// variables as defaults (flags win).
func parseBench(args []string, stderr io.Writer) (bench.Config, error) {
	var f benchFlags
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.url, "url", "http://127.0.0.1:8080", "base URL of the target")
	fs.StringVar(&f.mode, "mode", "actions", "target API: sessions (/v1/sessions), actions (/v1/actions/next, history resent) or openai (/v1/chat/completions)")
	fs.StringVar(&f.model, "model", "", "model id, or ids a,b whose sessions alternate (default: the first id of the target's /v1/models)")
	fs.IntVar(&f.sessions, "sessions", 32, "simulated shopper sessions")
	fs.IntVar(&f.steps, "steps", 6, "step budget of each session (terminate ends one sooner)")
	fs.IntVar(&f.minSteps, "min-steps", 0, "sessions take at least this many steps: an earlier terminate is replaced by a fallback action")
	fs.IntVar(&f.pageTokens, "page-tokens", 150, "approximate page size, in tokens (4 bytes each)")
	fs.IntVar(&f.maxTokens, "max-tokens", 64, "max_tokens of each step")
	fs.Uint64Var(&f.seed, "seed", 1, "workload seed: store, personas, first pages, fallback actions, sampling seeds")
	fs.StringVar(&f.format, "format", "", "prompt format of the nextact modes: prompted, finetuned or tools (default: the server's)")
	fs.Float64Var(&f.temperature, "temperature", 0, "sampling temperature (0: greedy)")
	fs.BoolVar(&f.personas, "personas", true, "give each session a generated persona")
	fs.StringVar(&f.arrival, "arrival", "burst", "session arrivals: burst, poisson:RATE (sessions/s) or ramp:SECONDS")
	fs.DurationVar(&f.thinkTime, "think-time", 0, "pause of a shopper between steps")
	fs.DurationVar(&f.sloTTFT, "slo-ttft", 0, "goodput objective on time to first token (0: none)")
	fs.DurationVar(&f.sloStep, "slo-step", 0, "goodput objective on a step's end-to-end latency (0: none)")
	fs.DurationVar(&f.duration, "duration", 10*time.Minute, "upper bound of the whole benchmark; in-flight steps are cut off")
	fs.StringVar(&f.out, "out", "", "directory for report.json and report.html (default: none written)")
	fs.StringVar(&f.compare, "compare", "", "base URL of a second target run alternately with the same workload")
	fs.StringVar(&f.compareMode, "compare-mode", "", "mode of the --compare target (default: --mode)")
	fs.StringVar(&f.compareModel, "compare-model", "", "model of the --compare target (default: its first listed)")
	fs.IntVar(&f.rounds, "rounds", 1, "with --compare: runs per target, alternating a, b, a, b, ...")
	fs.StringVar(&f.apiKey, "api-key", "", "sent as 'Authorization: Bearer KEY' to the targets")
	if err := envDefaultsPrefix(fs, benchEnvPrefix); err != nil {
		return bench.Config{}, err
	}
	if err := fs.Parse(args); err != nil {
		return bench.Config{}, err
	}
	if fs.NArg() > 0 {
		return bench.Config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return f.config()
}

func (f benchFlags) config() (bench.Config, error) {
	mode, err := bench.ParseMode(f.mode)
	if err != nil {
		return bench.Config{}, fmt.Errorf("--mode: %w", err)
	}
	compareMode := mode
	if f.compareMode != "" {
		if compareMode, err = bench.ParseMode(f.compareMode); err != nil {
			return bench.Config{}, fmt.Errorf("--compare-mode: %w", err)
		}
	}
	arrival, err := bench.ParseArrival(f.arrival)
	if err != nil {
		return bench.Config{}, fmt.Errorf("--arrival: %w", err)
	}
	c := bench.Config{
		Target:   bench.Target{URL: f.url, Mode: mode, Model: f.model},
		Sessions: f.sessions, Steps: f.steps, MinSteps: f.minSteps, PageTokens: f.pageTokens, MaxTokens: f.maxTokens, Seed: f.seed,
		Format: strings.ToLower(strings.TrimSpace(f.format)), Temperature: f.temperature, Personas: f.personas,
		Arrival: arrival, ThinkTime: f.thinkTime, SLO: bench.SLO{TTFT: f.sloTTFT, Step: f.sloStep},
		Duration: f.duration, Out: f.out, APIKey: f.apiKey, Rounds: f.rounds,
	}
	if f.compare != "" {
		c.Compare = bench.Target{URL: f.compare, Mode: compareMode, Model: f.compareModel}
	}
	return c, c.Validate()
}

// envDefaultsPrefix sets each flag from prefix+NAME (upper case, dashes
// to underscores).
func envDefaultsPrefix(fs *flag.FlagSet, prefix string) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := prefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// runBench is `nextact bench`: 0 when the benchmark ran and some step
// succeeded, 1 when it could not run or nothing succeeded (the report is
// still written), 2 on bad flags.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseBench(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "nextact bench:", err)
		return 2
	}
	rep, err := bench.Bench(ctx, cfg, bench.Deps{Out: stdout, Terminal: isTerminal(stdout), Version: version})
	if err != nil {
		fmt.Fprintln(stderr, "nextact bench:", err)
		return 1
	}
	if !rep.Succeeded() {
		fmt.Fprintln(stderr, "nextact bench:", bench.ErrNoSuccess)
		return 1
	}
	return 0
}
