package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/nextact/nextact/server"
)

// The request deadline starts when the handler does: a request whose
// preparation (here a tokenizer that takes 150 ms a call, standing in for
// any slow rendering or compiling) outlasts --request-timeout is a 504,
// never submitted. On c74a939 the deadline started at submission, so
// preparation was unbounded. The fake tokenizer is the only way to stage a
// slow preparation now that the real one is linear.
func TestDeadlineCoversPreparation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cfg: serverConfigWithTimeout(100 * time.Millisecond)})
	e.tok.mu.Lock()
	e.tok.delay = 150 * time.Millisecond
	e.tok.mu.Unlock()
	for _, path := range []string{"/v1/chat/completions", "/v1/completions"} {
		body := chatBody("hi", `"max_tokens":1`)
		if path == "/v1/completions" {
			body = completionBody("hi", `"max_tokens":1`)
		}
		resp, b := e.do(t, http.MethodPost, path, body)
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("%s: status %d, want 504: %s", path, resp.StatusCode, b)
		}
		if e := decodeErr(t, b); deref(e.Error.Code) != "timeout" {
			t.Fatalf("%s: %s", path, b)
		}
	}
	if st := e.sched.Stats(); st.Steps != 0 {
		t.Fatalf("a request past its deadline reached the engine: %+v", st)
	}
}

func serverConfigWithTimeout(d time.Duration) server.Config {
	return server.Config{RequestTimeout: d}
}
