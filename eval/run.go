package eval

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nextact/nextact/nextaction"
)

// maxFailedInARow stops a run whose target failed this many cases in a
// row (it is down, or every request is refused): the results so far stay,
// and the same command resumes.
const maxFailedInARow = 10

// ErrTargetFailing is returned when a run stopped because its target
// failed maxFailedInARow cases in a row.
var ErrTargetFailing = errors.New("the target failed every case of the last 10")

// RunStats are a run's counters (they depend on timing, unlike the
// metrics).
type RunStats struct {
	// Resumed counts the cases whose results were already in the file.
	Resumed int
	// Requests counts the requests sent, Retries those that repeated one.
	Requests, Retries int
	Wall              time.Duration
	// Latencies are the times of the cases answered in this run, ms.
	Latencies                      []float64
	PromptTokens, CompletionTokens int
}

// runner sends one target the cases not yet in its results file.
type runner struct {
	t      Target
	prep   *Preparer
	rf     *ResultsFile
	opts   RunOptions
	deps   Deps
	prog   *progress
	failed atomic.Int64 // cases failed in a row
	mu     sync.Mutex
	stats  RunStats
}

// RunOptions bound how a run talks to a target.
type RunOptions struct {
	// Concurrency is how many requests are in flight at once.
	Concurrency int
	// Retries bounds the retries of one case: after a 429 or 503 (waiting
	// Retry-After, else an exponential backoff) or a transport error.
	Retries int
	// MaxRetryWait caps one wait.
	MaxRetryWait time.Duration
	// Seed makes each case's sampling seed (sent with every request).
	Seed uint64
}

// caseSeed is the sampling seed of a case: fixed by the run's seed and
// the case, and below 2^31, which every server's seed field takes (OpenAI's
// and nextact's chat API refuse integers over 2^63).
func caseSeed(seed uint64, id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return (h.Sum64() ^ (seed * 0x9e3779b97f4a7c15)) & (1<<31 - 1)
}

// run sends the cases without a final result (ok or not sent) and
// records each result as it arrives. It returns when every case has one,
// ctx ends (the cases in flight are not recorded) or the target failed
// too many cases in a row.
func (r *runner) run(ctx context.Context, cases []Case) (RunStats, error) {
	start := r.deps.Now()
	done := r.rf.Done()
	var todo []int
	for i := range cases {
		if res, ok := done[cases[i].ID]; ok && res.Status != StatusFailed {
			r.stats.Resumed++
			r.prog.add(res, &cases[i])
			continue
		}
		todo = append(todo, i)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int)
	var wg sync.WaitGroup
	var werr atomic.Pointer[error]
	for range min(r.opts.Concurrency, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				res, ok := r.one(ctx, &cases[i])
				if !ok {
					continue // cancelled: not recorded, sent again on resume
				}
				if err := r.rf.Append(res); err != nil {
					werr.CompareAndSwap(nil, &err)
					cancel(err)
					continue
				}
				r.prog.add(res, &cases[i])
				if res.Status == StatusFailed {
					if r.failed.Add(1) >= maxFailedInARow {
						cancel(fmt.Errorf("%w (last: %s)", ErrTargetFailing, res.Error))
					}
				} else {
					r.failed.Store(0)
				}
			}
		}()
	}
feed:
	for _, i := range todo {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	r.stats.Wall = r.deps.Now().Sub(start)
	if err := werr.Load(); err != nil {
		return r.stats, *err
	}
	return r.stats, context.Cause(ctx)
}

// one runs a case to its result; ok is false when ctx ended first.
func (r *runner) one(ctx context.Context, c *Case) (Result, bool) {
	res := Result{Case: c.ID}
	p, err := r.prep.Prepare(c)
	res.Reduction = p.Red
	switch {
	case err != nil: // a page that does not parse: the target would refuse it too
		res.Status, res.Error = StatusNotSent, "prepare: "+err.Error()
		res.Reduction.NotSent = res.Error
		return res, true
	case p.Red.NotSent != "":
		res.Status, res.Error = StatusNotSent, p.Red.NotSent
		return res, true
	}
	req := Request{Page: p.Page, History: p.History, Persona: p.Persona, Seed: caseSeed(r.opts.Seed, c.ID)}
	for {
		res.Attempts++
		t0 := r.deps.Now()
		ans, err := r.t.Predict(ctx, req)
		lat := r.deps.Now().Sub(t0)
		res.LatencyMs = float64(lat.Microseconds()) / 1000
		r.count(res.Attempts > 1, err == nil, lat, ans)
		if err == nil {
			res.Status, res.Action, res.Rationale, res.Raw = StatusOK, ans.Action, ans.Rationale, ans.Raw
			res.PromptTokens, res.CompletionTokens = ans.PromptTokens, ans.CompletionTokens
			return res, true
		}
		if ctx.Err() != nil {
			return res, false
		}
		wait, retry := r.retryAfter(err, res.Attempts)
		if !retry {
			res.Status, res.Error = StatusFailed, err.Error()
			return res, true
		}
		if r.deps.Sleep(ctx, wait) != nil {
			return res, false
		}
	}
}

// retryAfter decides whether a failed attempt is retried, and after how
// long: a 429 or 503 after its Retry-After (else the backoff), another
// status never, a transport or decoding error after the backoff
// (0.5 s doubling); at most Retries times, each wait at most MaxRetryWait.
func (r *runner) retryAfter(err error, attempts int) (time.Duration, bool) {
	if attempts > r.opts.Retries {
		return 0, false
	}
	var fe *nextaction.FieldError
	if errors.As(err, &fe) {
		return 0, false
	}
	wait := 500 * time.Millisecond << min(attempts-1, 16)
	var se *StatusError
	if errors.As(err, &se) {
		if !se.Retryable() {
			return 0, false
		}
		if se.RetryAfter > 0 {
			wait = se.RetryAfter
		}
	}
	return min(wait, r.opts.MaxRetryWait), true
}

func (r *runner) count(retry, ok bool, lat time.Duration, a Answer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Requests++
	if retry {
		r.stats.Retries++
	}
	if ok {
		r.stats.Latencies = append(r.stats.Latencies, float64(lat.Microseconds())/1000)
		r.stats.PromptTokens += a.PromptTokens
		r.stats.CompletionTokens += a.CompletionTokens
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
