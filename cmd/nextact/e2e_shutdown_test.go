package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
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

// SIGTERM on the real process: in-flight streams finish, the process exits 0.
func TestSIGTERMDrainsAndExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "serve", "--addr", "127.0.0.1:0", "--slots", "4", "--ctx", "512", "--step-tokens", "64", "--threads", "1", "--log-level", "info")
	cmd.Env = append(os.Environ(), "NEXTACT_TEST_RUN_MAIN=1", "NEXTACT_CACHE_DIR="+cacheDir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "listening" {
				addr <- line["addr"].(string)
			}
		}
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case <-time.After(2 * time.Minute):
		t.Fatal("server did not start")
	}
	const streams = 4
	var wg sync.WaitGroup
	results := make([]bool, streams)
	opened := make(chan struct{}, streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, r := openStream(t, base, "nextact-tiny")
			defer resp.Body.Close()
			opened <- struct{}{}
			_, results[i] = sseEvents(t, r)
		}()
	}
	for range streams {
		<-opened
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, ok := range results {
		if !ok {
			t.Errorf("stream %d did not finish with [DONE]", i)
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
