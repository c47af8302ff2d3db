package llamacpp_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
)

// Greedy outputs with the prefix cache equal outputs without it on the real
// engine, across 50 sessions × 8 steps (each prompt extends the last one
// with its answer and a new page), with 8 slots so sessions' KV is evicted
// and rebuilt along the way.
func TestPrefixCacheOnRealEngine(t *testing.T) {
	const sessions, steps, slots = 50, 8, 8
	e := open(t, slots, 1024, 256)
	pageTok := func(s, st int) []int32 {
		toks, err := e.Tokenize(fmt.Sprintf(" <page %d of shopper %d: %s>", st, s, strings.Repeat("item ", 2+st%3)), false)
		if err != nil {
			t.Fatal(err)
		}
		return toks
	}
	system, _ := e.Tokenize("You are a shopper on a store; say what you do next on each page.", false)
	run := func(noCache bool) (outs [][]string, hits, rebuilt int) {
		s, err := batching.New(e, e, batching.Config{Slots: slots, QueueSize: 64, StepTokens: 256, CtxPerSlot: 1024, NoPrefixCache: noCache}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.Close(context.Background()) }()
		outs = make([][]string, sessions)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for si := range sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				prompt := append([]int32(nil), system...)
				prevLen := 0
				for st := range steps {
					prompt = append(prompt, pageTok(si, st)...)
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
					h, err := s.Submit(ctx, batching.Request{Prompt: prompt, MaxTokens: 6})
					if err != nil {
						cancel()
						t.Error(err)
						return
					}
					c, err := h.Wait(ctx)
					cancel()
					if err != nil || c.Err != nil {
						t.Errorf("wait: %v %v", err, c.Err)
						return
					}
					outs[si] = append(outs[si], c.Text)
					mu.Lock()
					if c.Usage.CachedTokens > 0 {
						hits++
					}
					if st > 0 && c.Usage.CachedTokens < prevLen {
						rebuilt++
					}
					mu.Unlock()
					prevLen = len(prompt)
					ans, _ := e.Tokenize(c.Text, false)
					prompt = append(prompt, ans...)
				}
			}()
		}
		wg.Wait()
		return outs, hits, rebuilt
	}
	want, hitsOff, _ := run(true)
	got, hits, rebuilt := run(false)
	for i := range want {
		for j := range want[i] {
			if got[i][j] != want[i][j] {
				t.Fatalf("session %d step %d: with reuse %q, without %q", i, j, got[i][j], want[i][j])
			}
		}
	}
	if hitsOff != 0 || hits < sessions*steps/2 || rebuilt == 0 {
		t.Fatalf("cache hits %d (without the cache %d), rebuilt after eviction %d", hits, hitsOff, rebuilt)
	}
	t.Logf("%d of %d steps reused KV; %d rebuilt part of an evicted session", hits, sessions*steps, rebuilt)
}

// On the real engine, a request sharing only the system prompt with a long
// idle session gets a copy of that prefix in an empty slot (llama.cpp's
// whole-sequence copy, then a trim), the session keeps its KV for its next
// step, and every output equals a run without the cache.
func TestPrefixCacheCopyFromIdleOnRealEngine(t *testing.T) {
	e := open(t, 2, 1024, 256)
	tok := func(s string) []int32 {
		toks, err := e.Tokenize(s, false)
		if err != nil {
			t.Fatal(err)
		}
		return toks
	}
	system := tok("You are a shopper on a store; say what you do next on each page.")
	session := append(append([]int32(nil), system...), tok(strings.Repeat(" <page of shopper 1: item item item>", 6))...)
	other := append(append([]int32(nil), system...), tok(" <page of shopper 2: shoes>")...)
	run := func(noCache bool) (texts []string, cached []int) {
		s, err := batching.New(e, e, batching.Config{Slots: 2, QueueSize: 4, StepTokens: 256, CtxPerSlot: 1024, NoPrefixCache: noCache}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.Close(context.Background()) }()
		step := func(prompt []int32) string {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			h, err := s.Submit(ctx, batching.Request{Prompt: prompt, MaxTokens: 6})
			if err != nil {
				t.Fatal(err)
			}
			c, err := h.Wait(ctx)
			if err != nil || c.Err != nil {
				t.Fatalf("wait: %v %v", err, c.Err)
			}
			texts, cached = append(texts, c.Text), append(cached, c.Usage.CachedTokens)
			return c.Text
		}
		answer := step(session)
		step(other)
		step(append(append(append([]int32(nil), session...), tok(answer)...), tok(" <page of shopper 1: cart>")...))
		return texts, cached
	}
	want, _ := run(true)
	got, cached := run(false)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("request %d: with reuse %q, without %q", i, got[i], want[i])
		}
	}
	if cached[1] < len(system) || cached[2] < len(session) {
		t.Fatalf("cached tokens %v: want the system prompt (%d) for the other shopper and the whole session (%d) for its next step",
			cached, len(system), len(session))
	}
}
