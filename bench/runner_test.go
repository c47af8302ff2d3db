package bench_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nextact/nextact/bench"
	"github.com/nextact/nextact/nextaction"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeBackend answers from a function of (session, step, input); it
// records the inputs and counts open and closed sessions.
type fakeBackend struct {
	openFail func(i int) (bench.StepResult, bool)
	answer   func(ctx context.Context, in bench.StepInput) bench.StepResult

	mu     sync.Mutex
	inputs []bench.StepInput
	opened int
	closed int
}

func (b *fakeBackend) Open(_ context.Context, s bench.SessionInfo) (bench.Conn, bench.StepResult) {
	if b.openFail != nil {
		if r, fail := b.openFail(s.Index); fail {
			return nil, r
		}
	}
	b.mu.Lock()
	b.opened++
	b.mu.Unlock()
	return &fakeConn{b: b}, bench.StepResult{}
}

type fakeConn struct{ b *fakeBackend }

func (c *fakeConn) Step(ctx context.Context, in bench.StepInput) bench.StepResult {
	c.b.mu.Lock()
	c.b.inputs = append(c.b.inputs, in)
	c.b.mu.Unlock()
	return c.b.answer(ctx, in)
}

func (c *fakeConn) Close(context.Context) {
	c.b.mu.Lock()
	c.b.closed++
	c.b.mu.Unlock()
}

func result(o bench.Outcome, reason string, status int, a *nextaction.Action) bench.StepResult {
	return bench.StepResult{Outcome: o, Reason: reason, Status: status, TTFT: time.Millisecond, ITL: -1,
		PromptTokens: 100, CompletionTokens: 10, CachedTokens: -1, Action: a}
}

// firstProduct clicks the first product link of the page, or else its
// last clickable.
func firstProduct(page string) *nextaction.Action {
	p, _ := nextaction.ParsePage(page)
	cs := p.Clickables()
	for _, n := range cs {
		if strings.HasSuffix(n, ".view_product") {
			return &nextaction.Action{Type: nextaction.TypeClick, Name: n}
		}
	}
	return &nextaction.Action{Type: nextaction.TypeClick, Name: cs[len(cs)-1]}
}

func spec(sessions, steps int) bench.RunSpec {
	return bench.RunSpec{Label: "a", Round: 1, Sessions: sessions, Steps: steps, Seed: 1, Personas: true,
		Arrival: bench.Arrival{Kind: bench.ArrivalBurst}, KeepHistory: true}
}

// Every step issued has one outcome; sessions end for the right reasons.
func TestRunAccountsForEveryStep(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{
		openFail: func(i int) (bench.StepResult, bool) {
			return result(bench.OutcomeFailed, "http_404", 404, nil), i == 9
		},
		answer: func(_ context.Context, in bench.StepInput) bench.StepResult {
			switch {
			case in.Session == 3 && in.Step == 1:
				return result(bench.OutcomeRejected, "http_503", 503, nil)
			case in.Session == 4 && in.Step == 2:
				return result(bench.OutcomeFailed, "transport", 0, nil)
			case in.Session == 5:
				return result(bench.OutcomeSuccess, "", 200, nil) // unparsed: fallback actions
			case in.Session == 6 && in.Step == 1:
				return result(bench.OutcomeSuccess, "", 200, &nextaction.Action{Type: nextaction.TypeTerminate})
			case in.Session == 7:
				return result(bench.OutcomeSuccess, "", 200, &nextaction.Action{Type: nextaction.TypeClick, Name: "no.such.element"})
			}
			return result(bench.OutcomeSuccess, "", 200, firstProduct(in.Page))
		},
	}
	res := bench.Run(context.Background(), spec(10, 4), b, bench.NewStore(1, 2000), time.Now, nil)
	rr := bench.NewRunReport("a", bench.Target{URL: "http://x", Mode: bench.ModeActions}, []*bench.RunResult{res}, bench.SLO{})
	c := rr.Steps
	if c.Success+c.Rejected+c.Failed != c.Issued || c.Issued != len(res.Steps) {
		t.Fatalf("steps do not add up: %+v, %d records", c, len(res.Steps))
	}
	perSession := 0
	for _, s := range res.Sessions {
		perSession += s.Steps
	}
	if perSession != c.Issued {
		t.Errorf("sessions count %d steps, %d were issued", perSession, c.Issued)
	}
	if c.Rejected != 1 || c.Failed != 2 || c.Reasons["http_503"] != 1 || c.Reasons["transport"] != 1 || c.Reasons["http_404"] != 1 {
		t.Errorf("counts = %+v", c)
	}
	if c.Unparsed < 4 || c.Unparsed > 8 { // sessions 5 and 7: every step, unless a fallback terminated
		t.Errorf("unparsed = %d", c.Unparsed)
	}
	ends := map[bench.SessionEnd][]int{}
	for _, s := range res.Sessions {
		ends[s.End] = append(ends[s.End], s.Index)
	}
	for _, want := range []struct {
		end bench.SessionEnd
		i   int
	}{{bench.EndAborted, 3}, {bench.EndAborted, 4}, {bench.EndAborted, 9}, {bench.EndTerminated, 6}, {bench.EndBudget, 0}} {
		if !slices.Contains(ends[want.end], want.i) {
			t.Errorf("session %d did not end %s: %v", want.i, want.end, ends)
		}
	}
	if b.opened != 9 || b.closed != 9 {
		t.Errorf("opened %d, closed %d sessions; want 9 and 9", b.opened, b.closed)
	}
}

// The history sent at step k holds k steps with their pages, and the page
// of step k+1 is where step k's action leads.
func TestRunSendsHistoryAndFollowsActions(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{answer: func(_ context.Context, in bench.StepInput) bench.StepResult {
		return result(bench.OutcomeSuccess, "", 200, firstProduct(in.Page))
	}}
	store := bench.NewStore(1, 2000)
	bench.Run(context.Background(), spec(1, 3), b, store, time.Now, nil)
	if len(b.inputs) != 3 {
		t.Fatalf("%d steps sent, want 3", len(b.inputs))
	}
	persona, start := store.Shopper(0)
	if b.inputs[0].Page != store.Render(start).HTML || b.inputs[0].Persona != persona {
		t.Error("the first step is not the shopper's first page and persona")
	}
	for k, in := range b.inputs {
		if len(in.History) != k {
			t.Fatalf("step %d has %d history entries", k, len(in.History))
		}
		if k > 0 && (in.History[k-1].Page != b.inputs[k-1].Page || in.History[k-1].Action.Name == "") {
			t.Errorf("history[%d] is not the previous step", k-1)
		}
	}
	if !strings.Contains(b.inputs[1].Page, `name="product.buy_now"`) {
		t.Error("a click on a product link did not lead to a product page")
	}
}

// A target that never answers: the run ends with its context, in-flight
// steps count as failed (cancelled), later arrivals as not started.
func TestRunStopsAtDeadline(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{answer: func(ctx context.Context, in bench.StepInput) bench.StepResult {
		<-ctx.Done()
		return result(bench.OutcomeFailed, "cancelled", 0, nil)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	sp := spec(6, 5)
	sp.Arrival = bench.Arrival{Kind: bench.ArrivalRamp, Ramp: time.Hour}
	start := time.Now()
	res := bench.Run(ctx, sp, b, bench.NewStore(1, 1000), time.Now, nil)
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Run took %s after a 150ms deadline", el)
	}
	if !res.Deadline || len(res.Steps) != 1 || res.Steps[0].Reason != "cancelled" {
		t.Fatalf("deadline %v, steps %+v", res.Deadline, res.Steps)
	}
	if res.Sessions[0].End != bench.EndCancelled || res.Sessions[5].End != bench.EndNotStarted {
		t.Errorf("sessions = %+v", res.Sessions)
	}
}

// Think time paces the steps of a session.
func TestRunThinkTime(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{answer: func(_ context.Context, in bench.StepInput) bench.StepResult {
		return result(bench.OutcomeSuccess, "", 200, firstProduct(in.Page))
	}}
	sp := spec(1, 3)
	sp.ThinkTime = 40 * time.Millisecond
	res := bench.Run(context.Background(), sp, b, bench.NewStore(1, 1000), time.Now, nil)
	for k := 1; k < len(res.Steps); k++ {
		if gap := res.Steps[k].Start - res.Steps[k-1].Start; gap < 40*time.Millisecond {
			t.Errorf("steps %d and %d are %s apart, under the think time", k-1, k, gap)
		}
	}
}

// With MinSteps, terminate answers before the minimum are overridden by
// actions that continue.
func TestRunMinSteps(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{answer: func(context.Context, bench.StepInput) bench.StepResult {
		return result(bench.OutcomeSuccess, "", 200, &nextaction.Action{Type: nextaction.TypeTerminate})
	}}
	sp := spec(3, 5)
	sp.MinSteps = 3
	res := bench.Run(context.Background(), sp, b, bench.NewStore(1, 1000), time.Now, nil)
	rr := bench.NewRunReport("a", bench.Target{Mode: bench.ModeActions}, []*bench.RunResult{res}, bench.SLO{})
	if rr.Steps.Issued != 9 || rr.Steps.Overridden != 6 || rr.Steps.Actions["terminate"] != 3 || rr.Sessions.Terminated != 3 {
		t.Fatalf("steps %+v, sessions %+v", rr.Steps, rr.Sessions)
	}
	for _, in := range b.inputs {
		for _, h := range in.History {
			if h.Action.Type == nextaction.TypeTerminate {
				t.Fatal("an overridden terminate is in the history")
			}
		}
	}
}
