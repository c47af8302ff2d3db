package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// streamBody is a streaming completion long enough to be cut by a shutdown
// that did not wait for it.
func streamBody(model string) string {
	return fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":600,"temperature":0,"stream":true}`, model)
}

// longStreamBody forces a long stream (~900 tokens on the embedded model):
// greedy decoding of "hi" ends after a few dozen tokens, a JSON string of at
// least 3,000 characters does not.
func longStreamBody(model string) string {
	return fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":3500,"temperature":0,"stream":true,`+
		`"response_format":{"type":"json_schema","json_schema":{"name":"long","schema":{"type":"object",`+
		`"properties":{"s":{"type":"string","minLength":3000}},"required":["s"]}}}}`, model)
}

// openStream starts a stream and returns once its first event arrived.
func openStream(t *testing.T, base, model string) (*http.Response, *bufio.Reader) {
	t.Helper()
	resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(streamBody(model)))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("first event: %v", err)
		}
		if strings.HasPrefix(line, "data: ") {
			return resp, r
		}
	}
}

// Shutdown during an in-flight stream lets it finish with [DONE].
func TestShutdownLetsStreamFinish(t *testing.T) {
	ts := startServer(t, testConfig())
	resp, r := openStream(t, ts.URL, ts.modelID())
	defer resp.Body.Close()
	if st := ts.stack.sched.Stats(); st.Running != 1 {
		t.Fatalf("the stream is not generating: %+v", st)
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut <- ts.stack.shutdown(ctx)
	}()
	events, done := sseEvents(t, r)
	if !done {
		t.Fatal("stream cut by shutdown: no [DONE]")
	}
	last := events[len(events)-1]
	if _, isErr := last["error"]; isErr {
		t.Fatalf("stream ended with an error: %v", last)
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := http.Get(ts.URL + "/health"); err == nil {
		t.Fatal("server still accepts connections after shutdown")
	}
}

// SIGTERM on the real process during 8 streams, 4 running and 4 waiting:
// readiness goes to 503, new requests get 503, all 8 streams complete, and
// the process exits 0.
func TestSIGTERMDrainsAndExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	proc := startServerProcess(t, "--slots", "4", "--ctx", "4096", "--step-tokens", "64", "--threads", "1")
	base, cmd := proc.base, proc.cmd
	if code := getStatus(t, base+"/health/ready"); code != http.StatusOK {
		t.Fatalf("ready before SIGTERM: %d", code)
	}
	const streams = 8
	var wg sync.WaitGroup
	results := make([]error, streams)
	opened := make(chan error, streams)
	for i := range streams {
		wg.Go(func() {
			resp, r, err := startStream(base, longStreamBody("nextact-tiny"))
			opened <- err
			if err != nil {
				results[i] = err
				return
			}
			defer resp.Body.Close()
			results[i] = readToDone(r)
		})
	}
	for range streams {
		if err := <-opened; err != nil {
			t.Fatalf("open stream: %v", err)
		}
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for getStatus(t, base+"/health/ready") != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("readiness did not drop after SIGTERM")
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(streamBody("nextact-tiny")))
	if err != nil {
		t.Fatalf("a new request while draining failed at the transport level: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"shutting_down"`) {
		t.Errorf("new request while draining: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	wg.Wait()
	t.Logf("8 streams drained in %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	for i, err := range results {
		if err != nil {
			t.Errorf("stream %d: %v", i, err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("process did not exit after draining")
	}
}

// startStream starts a stream and returns once its first event arrived.
func startStream(base, body string) (*http.Response, *bufio.Reader, error) {
	resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			resp.Body.Close()
			return nil, nil, fmt.Errorf("first event: %w", err)
		}
		if strings.HasPrefix(line, "data: ") {
			return resp, r, nil
		}
	}
}

// readToDone reads a stream to [DONE]; an error event or an early end is an
// error.
func readToDone(r *bufio.Reader) error {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("stream cut before [DONE]: %w", err)
		}
		data, ok := strings.CutPrefix(strings.TrimSpace(line), "data: ")
		switch {
		case !ok:
		case data == "[DONE]":
			return nil
		case strings.HasPrefix(data, `{"error"`):
			return fmt.Errorf("error event: %s", data)
		}
	}
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
