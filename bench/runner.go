package bench

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nextact/nextact/nextaction"
)

// RunSpec is one run: the workload sent to one backend.
type RunSpec struct {
	Label string
	Round int
	// Sessions and Steps (the budget of each session); a terminate answer
	// before MinSteps steps is replaced by a fallback that continues.
	Sessions, Steps, MinSteps int
	Seed                      uint64
	Personas                  bool
	Arrival                   Arrival
	ThinkTime                 time.Duration
	// KeepHistory makes the runner send each session's earlier steps
	// (every mode but ModeSessions).
	KeepHistory bool
}

// SessionEnd is why a session ended.
type SessionEnd string

// The session ends.
const (
	EndTerminated SessionEnd = "terminated"  // the shopper's terminate action
	EndBudget     SessionEnd = "step_budget" // all its steps were taken
	EndAborted    SessionEnd = "aborted"     // a step was rejected or failed
	EndCancelled  SessionEnd = "cancelled"   // the run's deadline
	EndNotStarted SessionEnd = "not_started" // the deadline came before its arrival
)

// SessionRecord is one session of a run.
type SessionRecord struct {
	Index int
	End   SessionEnd
	Steps int
	// Purchased: the shopper clicked a buy-now element; Ordered: and then
	// placed the order.
	Purchased, Ordered bool
}

// RunResult is what one run recorded.
type RunResult struct {
	Label   string
	Round   int
	Started time.Time
	// Wall is from the start to the end of the last step.
	Wall time.Duration
	// Deadline tells that the run's context ended before every session did.
	Deadline bool
	Steps    []StepRecord // in the order they were sent
	Sessions []SessionRecord
}

// Run drives spec's sessions against b on store's pages until every
// session ended or ctx is done, and returns what happened. Sessions start
// at spec.Arrival's offsets; one goroutine runs each started session. now
// is the clock of every timestamp; prog (may be nil) is told each step.
func Run(ctx context.Context, spec RunSpec, b Backend, store *Store, now func() time.Time, prog *Progress) *RunResult {
	r := &runner{spec: spec, b: b, store: store, now: now, prog: prog, start: now()}
	offsets := spec.Arrival.Offsets(spec.Sessions, rand.New(rand.NewPCG(spec.Seed, 0xa771)))
	sessions := make([]SessionRecord, spec.Sessions)
	var wg sync.WaitGroup
	for i, off := range offsets {
		if !r.waitUntil(ctx, off) {
			for j := i; j < len(sessions); j++ {
				sessions[j] = SessionRecord{Index: j, End: EndNotStarted}
			}
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sessions[i] = r.session(ctx, i)
		}()
	}
	wg.Wait()
	res := &RunResult{Label: spec.Label, Round: spec.Round, Started: r.start, Deadline: ctx.Err() != nil, Steps: r.steps, Sessions: sessions}
	slices.SortStableFunc(res.Steps, func(a, b StepRecord) int { return int(a.Start - b.Start) })
	for _, s := range res.Steps {
		res.Wall = max(res.Wall, s.Start+s.E2E)
	}
	if len(res.Steps) == 0 {
		res.Wall = now().Sub(r.start)
	}
	return res
}

type runner struct {
	spec  RunSpec
	b     Backend
	store *Store
	now   func() time.Time
	prog  *Progress
	start time.Time

	mu    sync.Mutex
	steps []StepRecord
}

// waitUntil sleeps until off after the start; false when ctx ended first.
func (r *runner) waitUntil(ctx context.Context, off time.Duration) bool {
	return sleep(ctx, off-r.now().Sub(r.start))
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// session runs shopper i from its first page to its end.
func (r *runner) session(ctx context.Context, i int) SessionRecord {
	persona, st := r.store.Shopper(i)
	if !r.spec.Personas {
		persona = ""
	}
	rec := SessionRecord{Index: i}
	r.prog.sessionStarted()
	defer func() { r.prog.sessionEnded() }()
	t0 := r.now()
	conn, res := r.b.Open(ctx, SessionInfo{Index: i, Persona: persona})
	if conn == nil {
		r.record(StepRecord{Session: i, Start: t0.Sub(r.start), E2E: r.now().Sub(t0)}, res, "")
		rec.Steps, rec.End = 1, endOf(ctx)
		return rec
	}
	defer conn.Close(ctx)
	fallback := rand.New(rand.NewPCG(r.spec.Seed, uint64(i)))
	var history []nextaction.Step
	for step := range r.spec.Steps {
		page := r.store.Render(st)
		t0 := r.now()
		res := conn.Step(ctx, StepInput{Session: i, Step: step, Page: page.HTML, History: history, Persona: persona})
		base := StepRecord{Session: i, Step: step, Start: t0.Sub(r.start), E2E: r.now().Sub(t0), PageKind: page.Kind.String(), PageBytes: len(page.HTML)}
		rec.Steps++
		if res.Outcome != OutcomeSuccess {
			r.record(base, res, "")
			rec.End = endOf(ctx)
			return rec
		}
		a, parsed := usable(res.Action, page)
		rationale := res.Rationale
		if !parsed {
			a, rationale = r.store.Fallback(page, fallback), ""
		}
		if a.Type == nextaction.TypeTerminate && step+1 < r.spec.MinSteps {
			a, rationale = r.store.FallbackContinuing(page, fallback), ""
			base.Overridden = true
		}
		base.Parsed = parsed
		r.record(base, res, a.Type)
		if a.Type == nextaction.TypeTerminate {
			rec.End = EndTerminated
			return rec
		}
		if r.spec.KeepHistory {
			history = append(history, nextaction.Step{Page: page.HTML, Action: a, Rationale: rationale})
		}
		st = r.store.Navigate(st, a)
		rec.Purchased, rec.Ordered = st.Purchased, st.Ordered
		if step+1 < r.spec.Steps && !sleep(ctx, r.spec.ThinkTime) {
			rec.End = EndCancelled
			return rec
		}
	}
	rec.End = EndBudget
	return rec
}

func endOf(ctx context.Context) SessionEnd {
	if ctx.Err() != nil {
		return EndCancelled
	}
	return EndAborted
}

// usable returns a when it is an action valid on page p.
func usable(a *nextaction.Action, p Page) (nextaction.Action, bool) {
	if a == nil {
		return nextaction.Action{}, false
	}
	ok := false
	switch a.Type {
	case nextaction.TypeTerminate:
		ok = a.Name == "" && a.Text == ""
	case nextaction.TypeClick:
		ok = slices.Contains(p.Clickables, a.Name) && a.Text == ""
	case nextaction.TypeTypeAndSubmit:
		ok = slices.Contains(p.Inputs, a.Name) && strings.TrimSpace(a.Text) != ""
	}
	return *a, ok
}

// record completes base with res and stores it.
func (r *runner) record(base StepRecord, res StepResult, action string) {
	base.Round = r.spec.Round
	base.Outcome, base.Reason, base.Status, base.Error = res.Outcome, res.Reason, res.Status, res.Error
	base.TTFT, base.ITL = res.TTFT, res.ITL
	base.PromptTokens, base.CompletionTokens, base.CachedTokens = res.PromptTokens, res.CompletionTokens, res.CachedTokens
	base.Action = action
	r.mu.Lock()
	r.steps = append(r.steps, base)
	r.mu.Unlock()
	r.prog.stepDone(base)
}
