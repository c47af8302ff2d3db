package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nextact/nextact/batching/admission"
	"github.com/nextact/nextact/server"
)

// Per-client token buckets: a burst, then 429 with the time until the next
// token; the bucket refills with time; clients do not share buckets.
func TestRateLimitPerClient(t *testing.T) {
	t.Parallel()
	keys := []server.APIKey{
		{Key: "sk-a", Name: "a"},
		{Key: "sk-b", Name: "b"},
		{Key: "sk-slow", Name: "slow", RateLimit: 0.25, RateBurst: 1},
		{Key: "sk-free", Name: "free", RateLimit: -1},
	}
	e := newOpsEnv(t, opsOptions{cfg: server.Config{APIKeys: keys, RateLimit: 2, RateBurst: 3}})
	auth := func(k string) string { return "Authorization: Bearer " + k }
	for i := range 3 {
		if resp, b := e.chat(t, auth("sk-a")); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d in the burst: %d %s", i, resp.StatusCode, b)
		}
	}
	resp, b := e.chat(t, auth("sk-a"))
	wantError(t, resp, b, http.StatusTooManyRequests, "rate_limit_exceeded", "1")
	if typ := decodeErr(t, b).Error.Type; typ != "requests" {
		t.Errorf("type %q", typ)
	}
	if resp, b := e.chat(t, auth("sk-b")); resp.StatusCode != http.StatusOK {
		t.Fatalf("another key shares the bucket: %d %s", resp.StatusCode, b)
	}
	// GET /v1/models is not a generation: never limited.
	if resp, _ := e.do(t, http.MethodGet, "/v1/models", "", auth("sk-a")); resp.StatusCode != http.StatusOK {
		t.Errorf("models: %d", resp.StatusCode)
	}
	e.clock.Advance(500 * time.Millisecond) // one token at 2/s
	if resp, b := e.chat(t, auth("sk-a")); resp.StatusCode != http.StatusOK {
		t.Fatalf("after refill: %d %s", resp.StatusCode, b)
	}
	if resp, _ := e.chat(t, auth("sk-a")); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("refilled more than one token: %d", resp.StatusCode)
	}

	// A key's own limit: one request per 4 s.
	if resp, _ := e.chat(t, auth("sk-slow")); resp.StatusCode != http.StatusOK {
		t.Fatal("slow key's first request")
	}
	resp, b = e.chat(t, auth("sk-slow"))
	wantError(t, resp, b, http.StatusTooManyRequests, "rate_limit_exceeded", "4")
	for i := range 10 {
		if resp, b := e.chat(t, auth("sk-free")); resp.StatusCode != http.StatusOK {
			t.Fatalf("unlimited key, request %d: %d %s", i, resp.StatusCode, b)
		}
	}
	if m := e.metricsText(t); !strings.Contains(m, `nextact_admission_decisions_total{outcome="rejected",priority="normal",reason="rate_limited"} 3`) {
		t.Errorf("rate-limited decisions not counted:\n%s", grep(m, "rate_limited"))
	}
}

// Without keys the limit applies per client address.
func TestRateLimitWithoutKeys(t *testing.T) {
	t.Parallel()
	e := newOpsEnv(t, opsOptions{cfg: server.Config{RateLimit: 1}})
	if resp, _ := e.chat(t); resp.StatusCode != http.StatusOK {
		t.Fatal("first request")
	}
	resp, b := e.chat(t, server.PriorityHeader+": high")
	wantError(t, resp, b, http.StatusTooManyRequests, "rate_limit_exceeded", "1")
	if m := e.metricsText(t); !strings.Contains(m, `reason="rate_limited"} 1`) || !strings.Contains(m, `priority="`+admission.PriorityHigh.String()+`"`) {
		t.Errorf("decision by priority missing:\n%s", grep(m, "admission"))
	}
}

// grep returns the lines of s that contain sub.
func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
