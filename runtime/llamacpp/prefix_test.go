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
