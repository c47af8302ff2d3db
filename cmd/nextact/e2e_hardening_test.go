package main

import (
	"math"
	"sync"
	"testing"
)

// page is a small next-action page for the hardening tests.
const hardeningPage = `<div><input name="search_input"/><a name="shirt.view_product">Shirt</a><button name="cart.buy_now">Buy</button></div>`

// max_tokens (or max_completion_tokens) at the integer maximum is a 400
// context_length_exceeded on every endpoint that takes it, never a
// generation that runs into the context end; a request decoding beside
// those attempts is unaffected, and the KV reservation gauge never goes
// negative. (Before the fix the sum wrapped: the request decoded until the
// slot's context ended, the step failed, every request in it got a 500, and
// nextact_kv_reserved_tokens read -9.2e18.)
func TestMaxTokensAtIntMaxRefusedEverywhere(t *testing.T) {
	ts := startServer(t, testConfig())
	id := ts.modelID()
	const huge = math.MaxInt64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a step-mate: decodes while the huge requests arrive
		defer wg.Done()
		code, _, out := post(t, ts.URL+"/v1/chat/completions", chatReq(id, "a neighbour", map[string]any{"max_tokens": 200}))
		if code != 200 {
			t.Errorf("step-mate: %d %v", code, out)
		}
	}()
	sessCode, _, sess := post(t, ts.URL+"/v1/sessions", map[string]any{"model": id})
	if sessCode != 200 {
		t.Fatalf("create session: %d %v", sessCode, sess)
	}
	cases := []struct {
		name, path, param string
		body              map[string]any
	}{
		{"completions", "/v1/completions", "max_tokens", map[string]any{"model": id, "prompt": "hello", "max_tokens": huge}},
		{"chat max_tokens", "/v1/chat/completions", "max_tokens", chatReq(id, "hello", map[string]any{"max_tokens": huge})},
		{"chat max_completion_tokens", "/v1/chat/completions", "max_tokens", chatReq(id, "hello", map[string]any{"max_completion_tokens": huge})},
		{"next action", "/v1/actions/next", "max_tokens", map[string]any{"model": id, "page": hardeningPage, "max_tokens": huge}},
		{"session step", "/v1/sessions/" + sess["id"].(string) + "/steps", "max_tokens", map[string]any{"page": hardeningPage, "max_tokens": huge}},
	}
	for _, tc := range cases {
		code, _, out := post(t, ts.URL+tc.path, tc.body)
		e, _ := out["error"].(map[string]any)
		if code != 400 || e["code"] != "context_length_exceeded" || e["param"] != tc.param {
			t.Errorf("%s: %d %v, want 400 context_length_exceeded on %s", tc.name, code, out, tc.param)
		}
		if r := sum(scrape(t, ts.URL), "nextact_kv_reserved_tokens"); r < 0 {
			t.Errorf("%s: nextact_kv_reserved_tokens = %g", tc.name, r)
		}
	}
	wg.Wait()
	waitIdle(t, ts)
	if st := ts.stack.sched.Stats(); st.ReservedTokens != 0 {
		t.Fatalf("reservation left after every request ended: %+v", st)
	}
}
