package batching_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nextact/nextact/batching"
)

// Continuing steps of episodes wait ahead of first steps, and between two
// first steps at most EpisodeBypass of them go first: with one slot held,
// three first steps and then five continuing steps queued, the slot goes
// to them in the order the bound gives.
func TestEpisodeAdmissionOrder(t *testing.T) {
	t.Parallel()
	m, gate := hashModel(false), make(chan struct{})
	rec := &recorder{}
	s := newSched(t, gated(m.Engine(), gate), m, batching.Config{Slots: 1, QueueSize: 16, Observer: rec, EpisodeBypass: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Prompt lengths name the requests in the reports: x 1, n1..n3 2..4,
	// c1..c5 11..15.
	names := map[int]string{1: "x"}
	submit := func(name string, n int, continues bool) *batching.Handle {
		names[n] = name
		h, err := s.Submit(ctx, batching.Request{Prompt: prompt(strings.Repeat("p", n)), MaxTokens: 1, Continues: continues})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	hs := []*batching.Handle{submit("x", 1, false)}
	waitFor(t, func() bool { return s.Stats().Running == 1 })
	for i := 1; i <= 3; i++ {
		hs = append(hs, submit(fmt.Sprintf("n%d", i), 1+i, false))
	}
	for i := 1; i <= 5; i++ {
		hs = append(hs, submit(fmt.Sprintf("c%d", i), 10+i, true))
	}
	got := finishOrder(ctx, t, gate, hs, rec, func(r batching.Report) string { return names[r.Usage.PromptTokens] })
	if want := "x c1 c2 n1 c3 c4 n2 c5 n3"; strings.Join(got, " ") != want {
		t.Fatalf("admission order %v, want %s", got, want)
	}
}

// Under a burst of new sessions, sessions already under way still finish:
// four sessions of six steps on two slots, with 40 first steps of new
// sessions queued after their first step, finish their last step before
// most of the burst has started; without Continues they wait behind the
// whole burst. Each engine step takes 5 ms, so a session's next step is
// submitted long before the step that ended its last one is followed by
// another.
func TestEpisodesFinishUnderABurst(t *testing.T) {
	t.Parallel()
	for _, continues := range []bool{true, false} {
		m, gate := hashModel(false), make(chan struct{})
		rec := &recorder{}
		s := newSched(t, slowed(gated(m.Engine(), gate), 5*time.Millisecond), m, batching.Config{Slots: 2, QueueSize: 128, Observer: rec})
		ctx, cancel := context.WithCancel(context.Background())
		const sessions, steps, burst = 4, 6, 40
		done := make(chan struct{}, sessions)
		for i := range sessions {
			go func() {
				defer func() { done <- struct{}{} }()
				for st := range steps {
					p := fmt.Sprintf("session %d step %d", i, st)
					h, err := s.Submit(ctx, batching.Request{Prompt: prompt(p), MaxTokens: 2, Continues: continues && st > 0})
					if err != nil {
						t.Error(err)
						return
					}
					if _, err := h.Wait(ctx); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		waitFor(t, func() bool { st := s.Stats(); return st.Running+st.Waiting == sessions })
		var hs []*batching.Handle
		for i := range burst {
			h, err := s.Submit(ctx, batching.Request{Prompt: prompt(fmt.Sprintf("new session %d", i)), MaxTokens: 2})
			if err != nil {
				t.Fatal(err)
			}
			hs = append(hs, h)
		}
		close(gate)
		for range sessions {
			<-done
		}
		for _, h := range hs {
			if _, err := h.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// Finish order: burst prompts are 13-14 tokens, session ones 16.
		rec.mu.Lock()
		started, seen := 0, 0
		for _, r := range rec.reports {
			if r.Usage.PromptTokens == 16 {
				if seen++; seen == sessions*steps {
					break
				}
				continue
			}
			started++
		}
		rec.mu.Unlock()
		cancel()
		if continues && started > burst/2 {
			t.Errorf("with Continues: %d of %d new sessions finished before the running ones did", started, burst)
		}
		if !continues && started < burst-2*2 {
			t.Errorf("without Continues: only %d of %d new sessions finished before the running ones (the control should wait behind the burst)", started, burst)
		}
		t.Logf("continues %v: %d of %d new sessions done when the running sessions finished", continues, started, burst)
	}
}
