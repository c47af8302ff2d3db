package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/nextactiontest"
	"github.com/nextact/nextact/sessionstore/redisstore/redistest"
)

// Two replicas share sessions through a real redis-server: sessions
// created on A step on A and on B in turn, each step building on the
// history the other replica stored and answering what /v1/actions/next
// answers for it; then A is killed (SIGKILL) with a step of every session
// in flight: on B those sessions are 409 session_busy while A's leases
// last (--session-lease 2s), then continue with their histories.
func TestSessionsMoveBetweenReplicasRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	url := redistest.Start(t)
	args := []string{"--session-store", url, "--session-lease", "2s", "--slots", "4", "--ctx", "2048", "--threads", "1", "--step-tokens", "256"}
	a, b := startServerProcess(t, args...), startServerProcess(t, args...)
	const sessions, model = 3, "nextact-tiny"
	rng := rand.New(rand.NewPCG(14, 8))
	page := func(size int) string {
		p, _, _, _ := nextactiontest.RandomPage(rng, nextactiontest.PageOptions{MaxClickables: 5, MaxInputs: 1, ApproxBytes: size})
		return p
	}
	ids := make([]string, sessions)
	for i := range ids {
		code, _, created := post(t, a.base+"/v1/sessions", map[string]any{"model": model, "format": "prompted", "persona": fmt.Sprint("shopper ", i)})
		if code != 200 {
			t.Fatalf("create: %d %v", code, created)
		}
		ids[i] = created["id"].(string)
	}
	// step checks a step of session i on base against the stateless
	// answer to the history the other replica reports.
	step := func(base, other string, i int, p string) {
		t.Helper()
		hist, _ := getSessionSteps(t, other, ids[i])
		got := actionAt(t, base+"/v1/sessions/"+ids[i]+"/steps", map[string]any{"page": p, "max_tokens": 48})
		want := actionAt(t, base+"/v1/actions/next", map[string]any{"model": model, "format": "prompted",
			"persona": fmt.Sprint("shopper ", i), "page": p, "history": hist, "max_tokens": 48})
		if got.Action != want.Action || got.Rationale != want.Rationale || got.Usage.PromptTokens != want.Usage.PromptTokens {
			t.Fatalf("session %d on %s: %+v %q, stateless %+v %q", i, base, got.Action, got.Rationale, want.Action, want.Rationale)
		}
		after, _ := getSessionSteps(t, other, ids[i])
		if len(after) != len(hist)+1 || after[len(hist)].Page != p {
			t.Fatalf("session %d: the other replica sees %d steps, want %d", i, len(after), len(hist)+1)
		}
	}
	for round := range 3 {
		for i := range ids {
			if round%2 == 0 {
				step(a.base, b.base, i, page(400))
			} else {
				step(b.base, a.base, i, page(400))
			}
		}
	}

	// A step of each session in flight on A, then SIGKILL.
	before := make([][]nextaction.Step, sessions)
	for i := range ids {
		before[i], _ = getSessionSteps(t, b.base, ids[i])
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			body, _ := json.Marshal(map[string]any{"page": page(1500), "max_tokens": 48})
			if resp, err := http.Post(a.base+"/v1/sessions/"+id+"/steps", "application/json", bytes.NewReader(body)); err == nil {
				resp.Body.Close()
			}
		})
	}
	time.Sleep(150 * time.Millisecond)
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	wg.Wait()
	busy := 0
	for i, id := range ids {
		p := page(400)
		body, _ := json.Marshal(map[string]any{"page": p, "max_tokens": 48})
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp, err := http.Post(b.base+"/v1/sessions/"+id+"/steps", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var out map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
			e, _ := out["error"].(map[string]any)
			if resp.StatusCode != 409 || e["code"] != "session_busy" || time.Now().After(deadline) {
				t.Fatalf("session %d on B after A died: %d %v", i, resp.StatusCode, out)
			}
			busy++
			time.Sleep(200 * time.Millisecond)
		}
		hist, _ := getSessionSteps(t, b.base, id)
		// The history: the steps before the kill, the killed step only if
		// A stored it before dying, and B's step.
		if n := len(hist); n < len(before[i])+1 || n > len(before[i])+2 || !slices.Equal(hist[:len(before[i])], before[i]) || hist[n-1].Page != p {
			t.Fatalf("session %d: %d steps on B after the kill, %d before", i, n, len(before[i]))
		}
	}
	if busy == 0 {
		t.Fatal("no step on B waited for a lease of the killed replica; the test did not exercise the lease")
	}
	t.Logf("B waited %d times (200 ms each) for leases of the killed replica", busy)
}
