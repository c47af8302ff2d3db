package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/nextact/nextact/batching/admission"
	"github.com/nextact/nextact/server"
)

var testKeys = []server.APIKey{
	{Key: "sk-eval-0123456789", Name: "eval", Priority: admission.PriorityHigh},
	{Key: "sk-load-0123456789", Name: "load", Priority: admission.PriorityLow},
}

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	e := newOpsEnv(t, opsOptions{cfg: server.Config{APIKeys: testKeys}})
	e.srv.MarkReady()
	cases := []struct {
		name   string
		header []string
		status int
	}{
		{"missing", nil, http.StatusUnauthorized},
		{"wrong", []string{"Authorization: Bearer sk-eval-0123456780"}, http.StatusUnauthorized},
		{"prefix of a key", []string{"Authorization: Bearer sk-eval"}, http.StatusUnauthorized},
		{"not bearer", []string{"Authorization: Basic sk-eval-0123456789"}, http.StatusUnauthorized},
		{"empty bearer", []string{"Authorization: Bearer "}, http.StatusUnauthorized},
		{"right", []string{"Authorization: Bearer sk-eval-0123456789"}, http.StatusOK},
		{"other right key, lower-case scheme", []string{"Authorization: bearer sk-load-0123456789"}, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, path := range []string{"/v1/chat/completions", "/v1/models"} {
				method, body := http.MethodPost, chatBody("hi", `"max_tokens":2`)
				if path == "/v1/models" {
					method, body = http.MethodGet, ""
				}
				resp, b := e.do(t, method, path, body, tc.header...)
				if resp.StatusCode != tc.status {
					t.Fatalf("%s: status %d, want %d: %s", path, resp.StatusCode, tc.status, b)
				}
				if tc.status != http.StatusUnauthorized {
					continue
				}
				got := decodeErr(t, b).Error
				if got.Type != "invalid_request_error" || deref(got.Code) != "invalid_api_key" || strings.Contains(got.Message, "0123456789") {
					t.Errorf("401 body %s", b)
				}
				if resp.Header.Get("WWW-Authenticate") != "Bearer" {
					t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
				}
			}
		})
	}
	// Probes and the scraper need no key.
	for _, path := range []string{"/health", "/health/ready", "/metrics"} {
		if resp, b := e.do(t, http.MethodGet, path, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
}

func TestAPIKeyConfigErrors(t *testing.T) {
	t.Parallel()
	for _, keys := range [][]server.APIKey{
		{{Key: ""}},
		{{Key: "a b"}},
		{{Key: "same"}, {Key: "same"}},
	} {
		_, err := server.New(server.Config{APIKeys: keys}, server.Deps{Models: []*server.Model{{
			ID: "m", ContextLength: 16, Format: "llama3", Tokenizer: &fakeTokenizer{}, Generator: errGenerator{},
		}}})
		if err == nil {
			t.Errorf("keys %+v accepted", keys)
		}
	}
}

// The priority of a request: the key's class by default and at most; the
// header alone without keys.
func TestRequestPriority(t *testing.T) {
	t.Parallel()
	probe := func(e *opsEnv) {
		e.srv.App().Post("/v1/priority", func(c *fiber.Ctx) error {
			return c.SendString(server.RequestPriority(c).String())
		})
	}
	keyed := newOpsEnv(t, opsOptions{cfg: server.Config{APIKeys: testKeys}})
	open := newOpsEnv(t, opsOptions{})
	probe(keyed)
	probe(open)
	eval, load := "Authorization: Bearer sk-eval-0123456789", "Authorization: Bearer sk-load-0123456789"
	cases := []struct {
		e       *opsEnv
		headers []string
		want    string
	}{
		{keyed, []string{eval}, "high"},
		{keyed, []string{load}, "low"},
		{keyed, []string{eval, server.PriorityHeader + ": low"}, "low"},
		{keyed, []string{load, server.PriorityHeader + ": high"}, "low"},
		{open, nil, "normal"},
		{open, []string{server.PriorityHeader + ": High"}, "high"},
		{open, []string{server.PriorityHeader + ": low"}, "low"},
	}
	for i, tc := range cases {
		resp, b := tc.e.do(t, http.MethodPost, "/v1/priority", "", tc.headers...)
		if resp.StatusCode != http.StatusOK || string(b) != tc.want {
			t.Errorf("case %d %v: %d %s, want %s", i, tc.headers, resp.StatusCode, b, tc.want)
		}
	}
	resp, b := open.do(t, http.MethodPost, "/v1/priority", "", server.PriorityHeader+": urgent")
	wantError(t, resp, b, http.StatusBadRequest, "<null>", "")
}
