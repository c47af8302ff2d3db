package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nextact/nextact/eval"
)

// evalEnvPrefix prefixes the environment variables of `nextact eval`.
const evalEnvPrefix = "NEXTACT_EVAL_"

// parseEval reads eval's flags, with NEXTACT_EVAL_<FLAG> environment
// variables as defaults (flags win).
func parseEval(args []string, stderr io.Writer) (eval.Config, error) {
	var c eval.Config
	var compareMode, compareModel, compareFormat string
	var compareSchema bool
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Data, "data", "", "the data: a JSONL file, a Parquet action file or a directory of OPeRA Parquet files (required)")
	fs.StringVar(&c.Split, "split", "", "with a Parquet directory: keep the files of this split (train, test, validation)")
	fs.StringVar(&c.Target.URL, "url", "http://127.0.0.1:8080", "base URL of the target")
	fs.StringVar(&c.Target.Mode, "mode", eval.ModeActions, "target API: actions (nextact's /v1/actions/next) or openai (/v1/chat/completions)")
	fs.StringVar(&c.Target.Model, "model", "", "model id (default: the first id of the target's /v1/models)")
	fs.StringVar(&c.Target.Format, "format", "prompted", "prompt format of actions mode: prompted or finetuned (openai mode is prompted)")
	fs.BoolVar(&c.Target.JSONSchema, "json-schema", false, "openai mode: send response_format json_schema (the server supports it)")
	fs.StringVar(&c.Compare.URL, "compare", "", "base URL of a second target asked the same cases (adds McNemar's test)")
	fs.StringVar(&compareMode, "compare-mode", "", "mode of the --compare target (default: --mode)")
	fs.StringVar(&compareModel, "compare-model", "", "model of the --compare target (default: its first listed)")
	fs.StringVar(&compareFormat, "compare-format", "", "format of the --compare target (default: --format)")
	fs.BoolVar(&compareSchema, "compare-json-schema", false, "openai mode: the --compare target gets response_format json_schema")
	fs.StringVar(&c.APIKey, "api-key", "", "sent as 'Authorization: Bearer KEY' to the targets")
	fs.IntVar(&c.Limit, "limit", 0, "evaluate the first N sessions with cases (by session id)")
	fs.IntVar(&c.Sample, "sample", 0, "evaluate N sessions drawn at random with --seed")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of --sample, the bootstrap and each case's sampling seed")
	fs.IntVar(&c.Gen.MaxTokens, "max-tokens", 512, "max_tokens of each request")
	fs.Float64Var(&c.Gen.Temperature, "temperature", 0, "sampling temperature (0: greedy)")
	fs.IntVar(&c.Budget.Ctx, "ctx", 4096, "the target's context per request, in tokens: prompts are reduced to fit it with --max-tokens")
	fs.Float64Var(&c.Budget.BytesPerToken, "bytes-per-token", 1, "bytes of prompt per token of --ctx (1 can never overflow a byte-level tokenizer; more keeps more page)")
	fs.IntVar(&c.Budget.MaxPageBytes, "max-page-bytes", 512<<10, "largest page sent (nextact serve's --max-page-bytes)")
	fs.IntVar(&c.Budget.MaxPersonaBytes, "max-persona-bytes", 8192, "longest persona sent")
	fs.IntVar(&c.Budget.MaxBodyBytes, "max-body-bytes", 8<<20, "largest request body (nextact serve's --body-limit): a case that could exceed it is not sent")
	fs.BoolVar(&c.Budget.Rationales, "rationales", true, "send the history's recorded rationales")
	fs.IntVar(&c.Run.Concurrency, "concurrency", 8, "requests in flight at once")
	fs.IntVar(&c.Run.Retries, "retries", 8, "retries of a case after 429, 503 or a transport error")
	fs.DurationVar(&c.Run.MaxRetryWait, "max-retry-wait", time.Minute, "longest wait before a retry (Retry-After is capped to it)")
	fs.IntVar(&c.Bootstrap, "bootstrap", 1000, "bootstrap resamples for the 95% intervals (0: none)")
	fs.StringVar(&c.Out, "out", "nextact-eval", "directory of the results files (resumed when present), report.json and report.html")
	fs.BoolVar(&c.Restart, "restart", false, "discard the results in --out and start over")
	if err := envDefaultsPrefix(fs, evalEnvPrefix); err != nil {
		return eval.Config{}, err
	}
	if err := fs.Parse(args); err != nil {
		return eval.Config{}, err
	}
	if fs.NArg() > 0 {
		return eval.Config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	c.Target.Mode = strings.ToLower(strings.TrimSpace(c.Target.Mode))
	c.Target.Format = strings.ToLower(strings.TrimSpace(c.Target.Format))
	if c.Compare.URL != "" {
		c.Compare.Mode, c.Compare.Model, c.Compare.Format, c.Compare.JSONSchema = c.Target.Mode, compareModel, c.Target.Format, compareSchema
		if compareMode != "" {
			c.Compare.Mode = strings.ToLower(strings.TrimSpace(compareMode))
		}
		if compareFormat != "" {
			c.Compare.Format = strings.ToLower(strings.TrimSpace(compareFormat))
		}
	}
	return c, c.Validate()
}

// runEval is `nextact eval`: 0 when every case has an answer (or could not
// be sent), 1 when the run could not finish or some requests failed (the
// report is then still written when the run finished), 2 on bad flags, 130
// when interrupted (the same command resumes).
func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseEval(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "nextact eval:", err)
		return 2
	}
	rep, err := eval.Run(ctx, cfg, eval.Deps{Out: stdout, Progress: stderr, Terminal: isTerminal(stderr), Version: version})
	switch {
	case errors.Is(err, eval.ErrInterrupted) && ctx.Err() != nil:
		fmt.Fprintln(stderr, "nextact eval:", err)
		return 130
	case err != nil:
		fmt.Fprintln(stderr, "nextact eval:", err)
		return 1
	}
	failed := 0
	for _, r := range rep.Runs {
		failed += r.Metrics.Answers.Failed
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "nextact eval: %d requests failed (counted as wrong; see the results files): run the same command to retry them\n", failed)
		return 1
	}
	return 0
}

// runGenEvalData is `nextact gen-eval-data`: it writes a generated data
// set in both formats.
func runGenEvalData(args []string, stdout, stderr io.Writer) int {
	var o eval.FixtureOptions
	var out string
	fs := flag.NewFlagSet("gen-eval-data", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&out, "out", "nextact-eval-data", "directory to write sessions.jsonl and opera/ (OPeRA's Parquet layout) into")
	fs.IntVar(&o.Sessions, "sessions", 50, "sessions")
	fs.IntVar(&o.MaxSteps, "steps", 8, "step budget of a session")
	fs.IntVar(&o.PageBytes, "page-bytes", 1500, "approximate page size")
	fs.IntVar(&o.LongPageEvery, "long-page-every", 0, "pad every n-th page to --long-page-bytes (0: none)")
	fs.IntVar(&o.LongPageBytes, "long-page-bytes", 64<<10, "size of the padded pages")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch {
	case o.Sessions < 1 || o.Sessions > 100000, o.MaxSteps < 1 || o.MaxSteps > 1000,
		o.PageBytes < 200 || o.PageBytes > 1<<20, o.LongPageEvery < 0, o.LongPageBytes < 1 || o.LongPageBytes > eval.MaxPageBytes:
		fmt.Fprintln(stderr, "nextact gen-eval-data: sessions in [1, 100000], steps in [1, 1000], page-bytes in [200, 1048576], long-page-bytes in [1, 16 MiB]")
		return 2
	}
	f := eval.GenerateFixture(o)
	jsonl, pq, err := f.WriteFiles(out)
	if err != nil {
		fmt.Fprintln(stderr, "nextact gen-eval-data:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %d sessions to %s and %s\n", len(f.Sessions), jsonl, pq)
	return 0
}
