package batching_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/batchingtest"
)

// sickModel is the hash model, except for sequences whose prompt starts
// with "nan": their rows are all fill (NaN, -Inf, +Inf), the way an engine
// fails numerically for one sequence.
func sickModel(fill float32) *batchingtest.Model {
	hash := batchingtest.HashNext(testEOG)
	return batchingtest.NewModel(testVocab, []int32{testEOG}, func(seq int32, hist []int32, served int, row []float32) {
		if len(hist) >= 3 && string([]byte{byte(hist[0]), byte(hist[1]), byte(hist[2])}) == "nan" {
			for i := range row {
				row[i] = fill
			}
			return
		}
		hash(seq, hist, served, row)
	})
}

// allowAll is a constraint with every optional extension that allows
// every token and completes at EOG, so sampling goes through the
// constraint's paths (rejection sampling and masking).
type allowAll struct{}

func (allowAll) Mask([]float32, int) error      { return nil }
func (allowAll) Allows(int32, int) bool         { return true }
func (allowAll) Accept(tok int32) (bool, error) { return tok == testEOG, nil }
func (allowAll) MinTokens() int                 { return 1 }

// A logits row with no finite value (all NaN, all -Inf, or +Inf) fails
// its sequence with ErrNoFiniteLogit at every temperature and cut, with
// and without a constraint, while the sequence decoding beside it
// finishes as it would alone. Before the fix such a row was sampled: token
// 0 at temperature 0 and an arbitrary token otherwise (a panic on an
// empty candidate list at c74a939).
func TestNoFiniteLogitFailsOnlyThatSequence(t *testing.T) {
	t.Parallel()
	modes := []batching.Sampling{{}, {Temperature: 0.8}, {Temperature: 0.8, TopK: 40}, {Temperature: 0.8, TopP: 0.9}, {Temperature: 1, TopK: 5, TopP: 0.5}}
	fills := []float32{float32(math.NaN()), float32(math.Inf(-1)), float32(math.Inf(1))}
	mateReq := batching.Request{Prompt: prompt("a healthy mate"), MaxTokens: 24}
	m := hashModel(true)
	want := run(t, newSched(t, m.Engine(), m, batching.Config{}), mateReq)
	for _, fill := range fills {
		for _, mode := range modes {
			for _, constrained := range []bool{false, true} {
				t.Run(fmt.Sprintf("%v/%+v/constrained=%v", fill, mode, constrained), func(t *testing.T) {
					t.Parallel()
					m := sickModel(fill)
					s := newSched(t, slowed(m.Engine(), 200*time.Microsecond), m, batching.Config{Slots: 2})
					ctx := context.Background()
					mate, err := s.Submit(ctx, mateReq)
					if err != nil {
						t.Fatal(err)
					}
					sick := batching.Request{Prompt: prompt("nan please"), MaxTokens: 8, Sampling: mode}
					if constrained {
						sick.Constraint = allowAll{}
					}
					c := run(t, s, sick)
					if c.Finish != batching.FinishError || !errors.Is(c.Err, batching.ErrNoFiniteLogit) {
						t.Errorf("the sick sequence: %+v, want FinishError with ErrNoFiniteLogit", c)
					}
					if mc, err := mate.Wait(ctx); err != nil || mc.Text != want.Text || mc.Finish != want.Finish {
						t.Errorf("its mate: %+v (%v), want %q as alone", mc, err, want.Text)
					}
				})
			}
		}
	}
}

// In a row with a finite maximum, NaN logits are never drawn: every token
// whose id is a multiple of 3 (the first included) is NaN here, greedy
// and sampled. Before the fix greedy returned token 0 (a NaN first logit
// stopped argmax's scan), and top-k drew NaN tokens.
func TestNaNLogitsNeverDrawn(t *testing.T) {
	t.Parallel()
	hash := batchingtest.HashNext(-1)
	m := batchingtest.NewModel(testVocab, []int32{testEOG}, func(seq int32, hist []int32, served int, row []float32) {
		hash(seq, hist, served, row)
		for i := 0; i < len(row); i += 3 {
			row[i] = float32(math.NaN())
		}
	})
	s := newSched(t, m.Engine(), m, batching.Config{Slots: 4})
	for k, mode := range []batching.Sampling{{}, {Temperature: 3}, {Temperature: 3, TopK: 50}, {Temperature: 3, TopP: 0.95}} {
		seed := uint64(k)
		mode.Seed = &seed
		c := run(t, s, batching.Request{Prompt: prompt("draw"), MaxTokens: 200, Sampling: mode})
		if c.Err != nil || len(c.Text) == 0 {
			t.Fatalf("%+v: %+v", mode, c)
		}
		for _, b := range []byte(c.Text) {
			if b%3 == 0 {
				t.Fatalf("%+v drew NaN token %d in %q", mode, b, c.Text)
			}
		}
	}
}

// panicky is a constraint that panics in the method named by where.
type panicky struct {
	where string
	n     int
}

func (p *panicky) bomb(where string) {
	if p.where == where {
		panic("constraint bug in " + where)
	}
}
func (p *panicky) Mask([]float32, int) error { p.bomb("Mask"); return nil }
func (p *panicky) Allows(int32, int) bool {
	p.bomb("Allows")
	return false // always mask: Mask runs too
}
func (p *panicky) Accept(int32) (bool, error) {
	p.bomb("Accept")
	p.n++
	return p.n >= 3, nil
}
func (p *panicky) MinTokens() int { return 1 }
func (p *panicky) Forced() []int32 {
	p.bomb("Forced")
	return nil
}
func (p *panicky) Done() bool { return false }

// A panic in the work done for one sequence (its constraint on a sampling
// worker or on the loop, its stop strings, emitting its text) fails that
// sequence alone with an error, and its step-mate finishes as it would
// alone; a panic in a constraint's opening fails its Submit. Before the
// fix a panic in Accept (on the loop goroutine) ended the process, and so
// did one in Forced (asked on the loop at admission).
func TestPanicFailsOnlyThatSequence(t *testing.T) {
	t.Parallel()
	mateReq := batching.Request{Prompt: prompt("a healthy mate"), MaxTokens: 24}
	m := hashModel(true)
	want := run(t, newSched(t, m.Engine(), m, batching.Config{}), mateReq)
	for _, where := range []string{"Mask", "Allows", "Accept", "Forced"} {
		t.Run(where, func(t *testing.T) {
			t.Parallel()
			m := hashModel(true)
			s := newSched(t, slowed(m.Engine(), 200*time.Microsecond), m, batching.Config{Slots: 2})
			ctx := context.Background()
			mate, err := s.Submit(ctx, mateReq)
			if err != nil {
				t.Fatal(err)
			}
			h, err := s.Submit(ctx, batching.Request{Prompt: prompt("bomb"), MaxTokens: 8, Sampling: batching.Sampling{Temperature: 1}, Constraint: &panicky{where: where}})
			if where == "Forced" {
				if err == nil || !strings.Contains(err.Error(), "panic") {
					t.Fatalf("Submit: %v, want the constraint's panic as an error", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				c, _ := h.Wait(ctx)
				if c.Finish != batching.FinishError || c.Err == nil || !strings.Contains(c.Err.Error(), "constraint bug in "+where) {
					t.Errorf("the panicking sequence: %+v, want FinishError naming the panic", c)
				}
			}
			if mc, err := mate.Wait(ctx); err != nil || mc.Text != want.Text || mc.Finish != want.Finish {
				t.Errorf("its mate: %+v (%v), want %q as alone", mc, err, want.Text)
			}
			if got := run(t, s, mateReq); got.Text != want.Text {
				t.Errorf("after: %+v", got)
			}
		})
	}
}

// literal is a constraint whose whole output is forced: complete at once,
// like a const-only JSON schema.
type literal struct{ text string }

func (l *literal) Mask([]float32, int) error  { return errors.New("nothing to sample") }
func (l *literal) Accept(int32) (bool, error) { return true, nil }
func (l *literal) MinTokens() int             { return len(l.text) }
func (l *literal) Done() bool                 { return true }
func (l *literal) Forced() []int32 {
	t := prompt(l.text)
	l.text = ""
	return t
}

// Requests that end without a step (complete on their forced tokens, or
// whose KV setup fails) do not leave the loop asleep with work queued: with
// one slot, a running request and queued ones behind it, every queued
// request ends without another Submit to wake the loop. Before the fix
// the loop slept after the second literal until the next Submit, and the
// last two waited out their deadline. (A KV setup that failed once was
// rescued by a pending wake-up; there the old code failed differently: the
// slot it could not clear was used as if empty, and the engine refused
// the next requests' steps.)
func TestRequestsEndingAtAdmissionDoNotStallTheQueue(t *testing.T) {
	t.Parallel()
	t.Run("literal", func(t *testing.T) {
		t.Parallel()
		m := hashModel(false)
		s := newSched(t, slowed(m.Engine(), time.Millisecond), m, batching.Config{Slots: 1})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		first, err := s.Submit(ctx, batching.Request{Prompt: prompt("normal"), MaxTokens: 6})
		if err != nil {
			t.Fatal(err)
		}
		var hs []*batching.Handle
		for i := range 4 {
			h, err := s.Submit(ctx, batching.Request{Prompt: prompt("lit"), MaxTokens: 8, Constraint: &literal{text: fmt.Sprintf(`{"n":%d}`, i)}})
			if err != nil {
				t.Fatal(err)
			}
			hs = append(hs, h)
		}
		if c, err := first.Wait(ctx); err != nil || c.Finish != batching.FinishLength {
			t.Fatalf("first: %+v %v", c, err)
		}
		for i, h := range hs {
			c, err := h.Wait(ctx)
			if err != nil || c.Finish != batching.FinishStop || c.Text != fmt.Sprintf(`{"n":%d}`, i) || c.Usage.CompletionTokens != 7 {
				t.Errorf("literal %d: %+v %v", i, c, err)
			}
		}
		if st := s.Stats(); st.Steps > 6 {
			t.Errorf("%d steps: literal requests were evaluated", st.Steps)
		}
	})
	t.Run("KV setup fails", func(t *testing.T) {
		t.Parallel()
		m := hashModel(false)
		r := m.Reuser()
		slowed(r.Engine, time.Millisecond)
		var clears atomic.Int32
		r.ClearSeqFunc = func(seq int32) error {
			if clears.Add(1) <= 4 { // two requests' setups and releases
				return errors.New("device lost")
			}
			return m.ClearSeq(seq)
		}
		s := newSched(t, r, m, batching.Config{Slots: 1})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		prompts := []string{"resident", "one", "two", "three"}
		var hs []*batching.Handle
		for _, p := range prompts {
			h, err := s.Submit(ctx, batching.Request{Prompt: prompt(p), MaxTokens: 4})
			if err != nil {
				t.Fatal(err)
			}
			hs = append(hs, h)
		}
		for i, h := range hs {
			c, err := h.Wait(ctx)
			if err != nil {
				t.Fatalf("request %d: %v (the loop slept with work queued)", i, err)
			}
			switch i {
			case 1, 2: // the slot could not be cleared for them
				if c.Finish != batching.FinishError || !strings.Contains(fmt.Sprint(c.Err), "prepare KV") {
					t.Errorf("request %d: %+v, want its KV setup's error", i, c)
				}
			default:
				if want := batchingtest.HashGreedy(-1, testVocab, prompt(prompts[i]), 4); c.Err != nil || c.Text != want {
					t.Errorf("request %d: %+v, want %q", i, c, want)
				}
			}
		}
	})
}

// A slot whose clear failed is cleared again before a new sequence uses
// it, so an engine failure while releasing one sequence fails no later
// one. Before the fix the next sequence in the slot was fed at position 0
// over the old KV, and the engine refused its step.
func TestFailedClearIsRetried(t *testing.T) {
	t.Parallel()
	m := hashModel(false)
	e := m.Engine()
	var clears atomic.Int32
	e.ClearSeqFunc = func(seq int32) error {
		if clears.Add(1) == 1 {
			return errors.New("device busy")
		}
		return m.ClearSeq(seq)
	}
	s := newSched(t, e, m, batching.Config{Slots: 1})
	a := run(t, s, batching.Request{Prompt: prompt("first"), MaxTokens: 4})
	b := run(t, s, batching.Request{Prompt: prompt("second"), MaxTokens: 4})
	want := batchingtest.HashGreedy(-1, testVocab, prompt("second"), 4)
	if a.Err != nil || b.Err != nil || b.Text != want {
		t.Fatalf("first %+v, second %+v, want %q", a, b, want)
	}
	if n := clears.Load(); n != 3 {
		t.Errorf("%d clears, want 3 (a failed release, the retry before reuse, the last release)", n)
	}
}

// Many sequences failing at once (NaN rows on every other slot) while
// their mates run, on several sampling workers: each fails alone and the
// scheduler holds no sequence afterwards.
func TestManySequencesFailingTogether(t *testing.T) {
	t.Parallel()
	m := sickModel(float32(math.NaN()))
	s := newSched(t, m.Engine(), m, batching.Config{Slots: 8, StepTokens: 32, SampleWorkers: 4})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := fmt.Sprintf("ok %d", i)
			if i%2 == 0 {
				p = fmt.Sprintf("nan %d", i)
			}
			c := run(t, s, batching.Request{Prompt: prompt(p), MaxTokens: 12, Sampling: batching.Sampling{Temperature: 0.5}})
			if failed := c.Finish == batching.FinishError; failed != (i%2 == 0) {
				t.Errorf("request %d (%s): %+v", i, p, c)
			}
		}()
	}
	wg.Wait()
	waitIdle(t, s)
	if m.Held() != 0 {
		t.Fatalf("engine still holds %d sequences", m.Held())
	}
}
