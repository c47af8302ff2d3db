package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/nextact/nextact/nextaction"
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
		page, cs, ins := nextaction.RandomPage(rng, nextaction.PageOptions{MaxClickables: 6, MaxInputs: 2, ApproxBytes: -1})
		code, _, out := post(t, ts.URL+"/v1/sessions/"+id+"/steps", map[string]any{"page": page, "max_tokens": 64})
		if code != 200 {
			t.Fatalf("step %d: %d %v", step, code, out)
		}
		var res nextaction.NextActionResponse
		data, _ := json.Marshal(out)
		if err := json.Unmarshal(data, &res); err != nil {
			t.Fatal(err)
		}
		p, _ := nextaction.ParsePage(page)
		if err := res.Action.Validate(p, 40); err != nil {
			t.Fatalf("step %d: %v (clickables %v inputs %v)", step, err, cs, ins)
		}
		d := res.Usage.PromptTokensDetails
		if d == nil || (step > 0 && d.CachedTokens == 0) {
			t.Fatalf("step %d: cached tokens %+v of %d", step, d, res.Usage.PromptTokens)
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
