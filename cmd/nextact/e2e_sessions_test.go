package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/nextactiontest"
)

// A shopper session on the real engine: each step returns a valid action,
// the history grows, cached_tokens is reported and > 0 from the second step
// (the prefix cache serves the stored history), and 404/409 behave.
func TestSessionStepsReuseKV(t *testing.T) {
	ts := startServer(t, testConfig2k())
	code, _, created := post(t, ts.URL+"/v1/sessions", map[string]any{"model": ts.modelID(), "persona": "a careful buyer", "format": "finetuned"})
	if code != 200 {
		t.Fatalf("create: %d %v", code, created)
	}
	id := created["id"].(string)
	rng := rand.New(rand.NewPCG(1, 1))
	for step := range 4 {
		page, cs, ins, _ := nextactiontest.RandomPage(rng, nextactiontest.PageOptions{MaxClickables: 6, MaxInputs: 2, ApproxBytes: -1})
		res := actionAt(t, ts.URL+"/v1/sessions/"+id+"/steps", map[string]any{"page": page, "max_tokens": 64})
		p, _ := nextaction.ParsePage(page)
		if err := res.Action.Validate(p, 40); err != nil {
			t.Fatalf("step %d: %v (clickables %v inputs %v)", step, err, cs, ins)
		}
		if d := res.Usage.PromptTokensDetails; step > 0 && d.CachedTokens == 0 {
			t.Fatalf("step %d: no cached tokens of %d", step, res.Usage.PromptTokens)
		}
	}
	resp, err := http.Get(ts.URL + "/v1/sessions/" + id)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Steps []nextaction.Step `json:"steps"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if len(got.Steps) != 4 {
		t.Fatalf("history has %d steps, want 4", len(got.Steps))
	}
	req, _ := http.NewRequest(http.MethodDelete, ts.URL+"/v1/sessions/"+id, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("delete: %v %v", resp, err)
	}
	code, _, out := post(t, ts.URL+"/v1/sessions/"+id+"/steps", map[string]any{"page": "<a name=\"x\">x</a>"})
	if e, _ := out["error"].(map[string]any); code != 404 || fmt.Sprint(e["code"]) != "session_not_found" {
		t.Fatalf("step on a deleted session: %d %v", code, out)
	}
}

func testConfig2k() serveConfig {
	c := testConfig()
	c.Ctx = 2048
	return c
}

// Sessions whose KV is evicted between their steps (4 sessions on 2 slots,
// stepped in turn) rebuild it from the stored history and answer exactly
// what a server without the prefix cache answers to the same history sent
// statelessly.
func TestSessionEvictedKVRebuilds(t *testing.T) {
	cached := testConfig2k()
	cached.Slots = 2
	plain := cached
	plain.NoPrefixCache = true
	a, b := startServer(t, cached), startServer(t, plain)

	const sessions, steps = 4, 3
	ids := make([]string, sessions)
	histories := make([][]nextaction.Step, sessions)
	for i := range ids {
		_, _, created := post(t, a.URL+"/v1/sessions", map[string]any{"model": a.modelID(), "format": "prompted"})
		ids[i] = created["id"].(string)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	evicted, prevPrompt := 0, make([]int, sessions)
	for step := range steps {
		for i, id := range ids {
			page, _, _, _ := nextactiontest.RandomPage(rng, nextactiontest.PageOptions{MaxClickables: 5, MaxInputs: 1, ApproxBytes: -1})
			got := actionAt(t, a.URL+"/v1/sessions/"+id+"/steps", map[string]any{"page": page, "max_tokens": 48})
			want := actionAt(t, b.URL+"/v1/actions/next", map[string]any{"model": b.modelID(), "format": "prompted",
				"page": page, "history": histories[i], "max_tokens": 48})
			if got.Action != want.Action || got.Rationale != want.Rationale {
				t.Fatalf("session %d step %d: with the cache %+v %q, without %+v %q", i, step, got.Action, got.Rationale, want.Action, want.Rationale)
			}
			if d := want.Usage.PromptTokensDetails; d != nil && d.CachedTokens != 0 {
				t.Fatalf("server without the cache reports %d cached tokens", d.CachedTokens)
			}
			// The previous step's prompt is a prefix of this one's: served
			// from cache in full when it stayed resident, in part after an
			// eviction (the shared system prompt only, or nothing).
			if step > 0 && got.Usage.PromptTokensDetails.CachedTokens < prevPrompt[i] {
				evicted++
			}
			prevPrompt[i] = got.Usage.PromptTokens
			histories[i] = append(histories[i], nextaction.Step{Page: page, Action: got.Action, Rationale: got.Rationale})
		}
	}
	if evicted == 0 {
		t.Fatal("no step found its session's KV evicted; the test does not exercise a rebuild")
	}
	t.Logf("%d of %d later steps rebuilt an evicted history", evicted, sessions*(steps-1))
}

func actionAt(t *testing.T, url string, body map[string]any) nextaction.NextActionResponse {
	t.Helper()
	code, _, out := post(t, url, body)
	if code != 200 {
		t.Fatalf("POST %s: %d %v", url, code, out)
	}
	var res nextaction.NextActionResponse
	data, _ := json.Marshal(out)
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if res.Usage.PromptTokensDetails == nil {
		t.Fatalf("POST %s: no prompt_tokens_details: %v", url, out)
	}
	return res
}
