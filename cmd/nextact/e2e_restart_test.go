package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/nextactiontest"
)

// getSessionSteps returns a session's stored history (GET), failing the
// test on anything but 200.
func getSessionSteps(t *testing.T, base, id string) (steps []nextaction.Step, history nextaction.HistoryPolicy) {
	t.Helper()
	resp, err := http.Get(base + "/v1/sessions/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Steps   []nextaction.Step        `json:"steps"`
		History nextaction.HistoryPolicy `json:"history"`
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET session %s: %d", id, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	return got.Steps, got.History
}

// Sessions survive SIGKILL with the embedded store: four sessions take two
// steps each, a third step of each is in flight when the process is
// killed, and a new process on the same file serves every session with its
// history (the two acknowledged steps, and the third only if it was
// acknowledged before the kill), its persona and history policy; each then
// takes its next step, whose answer is what /v1/actions/next gives for the
// same history (its KV rebuilt by prefill).
func TestSessionsSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	store := filepath.Join(t.TempDir(), "sessions.db")
	args := []string{"--session-store", store, "--slots", "4", "--ctx", "2048", "--threads", "1", "--step-tokens", "256"}
	proc := startServerProcess(t, args...)
	const sessions, model = 4, "nextact-tiny"
	rng := rand.New(rand.NewPCG(14, 4))
	page := func() string {
		p, _, _, _ := nextactiontest.RandomPage(rng, nextactiontest.PageOptions{MaxClickables: 5, MaxInputs: 1, ApproxBytes: 400})
		return p
	}
	ids := make([]string, sessions)
	acked := make([][]nextaction.Step, sessions)
	for i := range ids {
		code, _, created := post(t, proc.base+"/v1/sessions", map[string]any{"model": model, "format": "prompted",
			"persona": "shopper " + string(rune('a'+i)), "history": map[string]any{"policy": "window", "max_tokens": 900}})
		if code != 200 {
			t.Fatalf("create: %d %v", code, created)
		}
		ids[i] = created["id"].(string)
	}
	for range 2 {
		for i, id := range ids {
			p := page()
			res := actionAt(t, proc.base+"/v1/sessions/"+id+"/steps", map[string]any{"page": p, "max_tokens": 48})
			acked[i] = append(acked[i], nextaction.Step{Page: p, Action: res.Action, Rationale: res.Rationale})
		}
	}
	// A third step of every session in flight, then SIGKILL.
	var wg sync.WaitGroup
	third := make([]string, sessions)
	thirdAck := make([]*nextaction.NextActionResponse, sessions)
	for i := range ids {
		third[i] = page()
	}
	for i, id := range ids {
		wg.Go(func() {
			body, _ := json.Marshal(map[string]any{"page": third[i], "max_tokens": 48})
			resp, err := http.Post(proc.base+"/v1/sessions/"+id+"/steps", "application/json", bytes.NewReader(body))
			if err != nil {
				return // killed mid-step
			}
			defer resp.Body.Close()
			var res nextaction.NextActionResponse
			if resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&res) == nil {
				thirdAck[i] = &res
			}
		})
	}
	time.Sleep(150 * time.Millisecond)
	if err := proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = proc.cmd.Wait()
	wg.Wait()

	proc = startServerProcess(t, args...)
	finished := 0
	for i, id := range ids {
		steps, pol := getSessionSteps(t, proc.base, id)
		want := acked[i]
		if r := thirdAck[i]; r != nil {
			want = append(want, nextaction.Step{Page: third[i], Action: r.Action, Rationale: r.Rationale})
			finished++
		}
		if pol.Policy != "window" || pol.MaxTokens != 900 {
			t.Fatalf("session %d: history policy %+v after the restart", i, pol)
		}
		// A step in flight at the kill was not acknowledged; it may have
		// been stored an instant before.
		if len(steps) == len(want)+1 && thirdAck[i] == nil && steps[len(steps)-1].Page == third[i] {
			want = steps
		}
		if !slices.Equal(steps, want) {
			t.Fatalf("session %d: after the restart the history is %d steps, want %d:\n%+v\nwant\n%+v", i, len(steps), len(want), steps, want)
		}
		p := page()
		got := actionAt(t, proc.base+"/v1/sessions/"+id+"/steps", map[string]any{"page": p, "max_tokens": 48})
		stateless := actionAt(t, proc.base+"/v1/actions/next", map[string]any{"model": model, "format": "prompted",
			"persona": "shopper " + string(rune('a'+i)), "page": p, "history": steps, "max_tokens": 48,
			"history_policy": map[string]any{"max_tokens": 900}})
		if got.Action != stateless.Action || got.Rationale != stateless.Rationale || got.Usage.PromptTokens != stateless.Usage.PromptTokens {
			t.Fatalf("session %d after the restart: %+v %q (%d prompt tokens), stateless %+v %q (%d)", i,
				got.Action, got.Rationale, got.Usage.PromptTokens, stateless.Action, stateless.Rationale, stateless.Usage.PromptTokens)
		}
		if after, _ := getSessionSteps(t, proc.base, id); len(after) != len(steps)+1 {
			t.Fatalf("session %d: %d steps after the next step, want %d", i, len(after), len(steps)+1)
		}
	}
	t.Logf("%d of %d in-flight steps were answered before SIGKILL", finished, sessions)
}
