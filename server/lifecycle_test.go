package server_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nextact/nextact/server"
)

func TestQueueFull(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	e := newEnv(t, envOptions{slots: 1, queue: 1, engine: func(f *fakeEngine) { f.gate = gate }})

	// One request holds the slot (its first Decode blocks), one waits.
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	for i := range statuses {
		wg.Go(func() {
			resp, _ := e.do(t, http.MethodPost, "/v1/chat/completions", chatBody("hold", `"max_tokens":2`))
			statuses[i] = resp.StatusCode
		})
	}
	waitFor(t, "one running and one waiting", func() bool {
		st := e.sched.Stats()
		return st.Running == 1 && st.Waiting == 1
	})

	for _, stream := range []bool{false, true} {
		extra := fmt.Sprintf(`"max_tokens":2,"stream":%v`, stream)
		resp, body := e.do(t, http.MethodPost, "/v1/chat/completions", chatBody("third", extra))
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("stream=%v: status %d Retry-After %q, want 503 and 1: %s", stream, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		if got := decodeErr(t, body).Error; deref(got.Code) != "queue_full" {
			t.Errorf("code = %s", deref(got.Code))
		}
	}

	close(gate)
	wg.Wait()
	for i, st := range statuses {
		if st != http.StatusOK {
			t.Errorf("held request %d: status %d", i, st)
		}
	}
	if resp, body := e.do(t, http.MethodPost, "/v1/chat/completions", chatBody("after", `"max_tokens":2`)); resp.StatusCode != http.StatusOK {
		t.Errorf("after the queue drained: %d %s", resp.StatusCode, body)
	}
}

// rawStream sends a streaming request on a fresh connection and returns it
// with a reader positioned at the body.
func rawStream(t *testing.T, addr, body string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(addr, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return conn, bufio.NewReader(resp.Body)
}

func TestClientDisconnectFreesSlot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{slots: 1, engine: func(f *fakeEngine) { f.delay = time.Millisecond }})
	addr := serve(t, e)

	conn, br := rawStream(t, addr, chatBody("long", `"stream":true,"max_tokens":350`))
	for i := range 3 {
		if _, err := nextEvent(br); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if st := e.sched.Stats(); st.Running != 1 {
		t.Fatalf("stats while streaming: %+v", st)
	}
	conn.Close()
	waitFor(t, "the slot to be freed", func() bool { return e.sched.Stats().Running == 0 })

	resp, err := http.Post(addr+"/v1/chat/completions", "application/json", strings.NewReader(chatBody("next", `"max_tokens":3`)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
		t.Fatalf("next request: %d %s", resp.StatusCode, body)
	}
}

func TestShutdownLetsStreamFinish(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{skipShutdown: true, engine: func(f *fakeEngine) { f.delay = 2 * time.Millisecond }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ln) }()

	const n = 60
	_, br := rawStream(t, "http://"+ln.Addr().String(), chatBody("drain", fmt.Sprintf(`"stream":true,"max_tokens":%d`, n)))
	first, err := nextEvent(br)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- e.srv.Shutdown(ctx) }()

	rest := readEvents(t, br)
	got := collect(t, append([]sseEvent{first}, rest...), "chat.completion.chunk", false)
	if got.text != greedyText('\n', n) || got.finish != "length" {
		t.Errorf("drained stream: text %q finish %q", got.text, got.finish)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("still accepting connections after Shutdown")
	}
}

func TestShutdownDeadlineCancelsStreams(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	e := newEnv(t, envOptions{skipShutdown: true, engine: func(f *fakeEngine) { f.gate = gate }})
	addr := serve(t, e)

	_, br := rawStream(t, addr, chatBody("stuck", `"stream":true,"max_tokens":5`))
	waitFor(t, "the request to run", func() bool { return e.sched.Stats().Running == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %s", d)
	}
	got := collect(t, readEvents(t, br), "chat.completion.chunk", false)
	if e := decodeErr(t, bytes.TrimSpace(got.errBody)).Error; deref(e.Code) != "shutting_down" {
		t.Errorf("error event = %s", got.errBody)
	}
	close(gate)
	waitFor(t, "the slot to be freed", func() bool { return e.sched.Stats().Running == 0 })
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cfg: server.Config{BodyLimit: 2048}})
	addr := serve(t, e)
	tests := []struct {
		name   string
		body   string
		status int
	}{
		{"over the limit", chatBody(strings.Repeat("x", 4096), `"max_tokens":1`), http.StatusRequestEntityTooLarge},
		{"under the limit", chatBody(strings.Repeat("x", 100), `"max_tokens":1`), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := http.Post(addr+"/v1/chat/completions", "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if tt.status == http.StatusOK {
				return
			}
			got := decodeErr(t, body).Error
			if got.Type != "invalid_request_error" || deref(got.Code) != "request_too_large" || !strings.Contains(got.Message, "2048") {
				t.Errorf("error = %s", body)
			}
		})
	}
}

// A client that leaves while its request still waits for a slot is noticed
// by the keep-alive comments, and its request leaves the queue.
func TestClientDisconnectWhileQueued(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{slots: 1, engine: func(f *fakeEngine) { f.delay = 2 * time.Millisecond }})
	server.SetKeepAlive(e.srv, 20*time.Millisecond)
	addr := serve(t, e)

	held := make(chan int, 1)
	go func() {
		resp, err := http.Post(addr+"/v1/chat/completions", "application/json", strings.NewReader(chatBody("hold", `"max_tokens":300`)))
		if err != nil {
			held <- 0
			return
		}
		resp.Body.Close()
		held <- resp.StatusCode
	}()
	waitFor(t, "the slot to be taken", func() bool { return e.sched.Stats().Running == 1 })

	conn, br := rawStream(t, addr, chatBody("queued", `"stream":true,"max_tokens":5`))
	if ev, err := nextEvent(br); err != nil || !strings.Contains(string(ev.data), `"role":"assistant"`) {
		t.Fatalf("first event %s: %v", ev.data, err)
	}
	if st := e.sched.Stats(); st.Waiting != 1 {
		t.Fatalf("stats: %+v, want one waiting", st)
	}
	conn.Close()
	waitFor(t, "the queued request to leave", func() bool {
		st := e.sched.Stats()
		return st.Waiting == 0 && st.Running == 1
	})
	select {
	case <-held:
		t.Fatal("the held request ended first, so the queued one may simply have run")
	default:
	}
	if st := <-held; st != http.StatusOK {
		t.Errorf("held request: status %d", st)
	}
}
