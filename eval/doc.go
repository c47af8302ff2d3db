// Package eval is nextact's evaluation harness (`nextact eval`): the
// accuracy metrics of Lu et al. 2025 ("Beyond Believability") on recorded
// shopper sessions, against nextact or any OpenAI-compatible endpoint.
//
// Data (data.go, jsonl.go, parquet.go): Load reads OPeRA's public Parquet
// layout (the filtered_action, user and session tables) or a JSONL format
// of our own into Sessions of Steps; Dataset.Cases makes the test cases,
// steps 2..N of each session with the ground-truth history.
// GenerateFixture (fixture.go) simulates sessions on the bench's synthetic
// store and writes them in both formats, for tests and for trying the
// tool.
//
// A run (eval.go, run.go): every case is prepared by one reduction policy
// (prepare.go: pages reduced with nextaction.ReducePage, history cut to
// the budget of --ctx, the same for every target) and sent to a Target
// (target.go: nextact's /v1/actions/next through the typed client, or
// /v1/chat/completions with the prompted format and a tolerant parser)
// with bounded concurrency and bounded retries; each result is appended
// to a results file (results.go) as it arrives, so an interrupted run
// resumes.
//
// Scoring (metrics.go, stats.go): Score judges a case by exact match;
// Aggregate computes per-session and micro accuracy, accuracy by type, the
// confusion matrix, error categories and session-outcome F1, with
// bootstrap intervals over sessions; McNemarTest compares two targets.
// The Report (report.go) has a versioned JSON schema documented in
// docs/EVAL.md; report.html (html.go) is self-contained; WriteSummary
// (summary.go) prints one screen.
//
// The package is pure Go. Of nextact it imports nextaction, its client,
// and bench (for the synthetic store and percentiles).
package eval
