package server_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nextact/nextact/server"
)

func TestReadinessAndDrain(t *testing.T) {
	t.Parallel()
	e := newOpsEnv(t, opsOptions{slots: 2, gated: true})
	ready := func() (int, string) {
		resp, b := e.do(t, http.MethodGet, "/health/ready", "")
		return resp.StatusCode, string(b)
	}
	if code, b := ready(); code != http.StatusServiceUnavailable || b != `{"status":"starting"}` {
		t.Fatalf("before MarkReady: %d %s", code, b)
	}
	e.srv.MarkReady()
	if code, b := ready(); code != http.StatusOK || b != `{"status":"ready"}` {
		t.Fatalf("ready: %d %s", code, b)
	}

	// Two requests in flight, one of them a stream, both held by the engine.
	var wg sync.WaitGroup
	results := make([]string, 2)
	for i, extra := range []string{`"max_tokens":2`, `"max_tokens":2,"stream":true`} {
		wg.Go(func() {
			resp, b := e.do(t, http.MethodPost, "/v1/chat/completions", chatBody("hi", extra))
			results[i] = resp.Status + " " + string(b)
		})
	}
	waitFor(t, "both requests to be accepted", func() bool { st := e.sched.Stats(); return st.Running+st.Waiting == 2 })

	drained := make(chan error, 1)
	go func() { drained <- e.srv.Drain(context.Background()) }()
	waitFor(t, "readiness to drop", func() bool { code, _ := ready(); return code == http.StatusServiceUnavailable })
	if _, b := ready(); b != `{"status":"draining"}` {
		t.Errorf("draining body %s", b)
	}
	e.srv.MarkReady() // no way back from draining
	if code, _ := ready(); code != http.StatusServiceUnavailable {
		t.Error("MarkReady undid draining")
	}
	resp, b := e.chat(t)
	wantError(t, resp, b, http.StatusServiceUnavailable, "shutting_down", "1")
	for _, path := range []string{"/health", "/v1/models", "/metrics"} {
		if resp, _ := e.do(t, http.MethodGet, path, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("%s while draining: %d", path, resp.StatusCode)
		}
	}
	select {
	case err := <-drained:
		t.Fatalf("drain returned with requests in flight: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	e.release()
	wg.Wait()
	for i, r := range results {
		if !strings.HasPrefix(r, "200 ") || strings.Contains(r, `"error"`) {
			t.Errorf("in-flight request %d: %s", i, r)
		}
	}
	if !strings.Contains(results[1], "data: [DONE]") {
		t.Errorf("stream cut: %s", results[1])
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
	m := e.metricsText(t)
	for _, want := range []string{
		`nextact_admission_decisions_total{outcome="rejected",priority="normal",reason="draining"} 1`,
		"nextact_ready 0", "nextact_draining 1",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestDrainGivesUpWithItsContext(t *testing.T) {
	t.Parallel()
	e := newOpsEnv(t, opsOptions{gated: true})
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.chat(t)
	}()
	waitFor(t, "the request to run", func() bool { return e.sched.Stats().Running == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := e.srv.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("drain: %v", err)
	}
	e.release()
	<-done
}

// A connection that was opened and never sent a request (a client's spare
// pooled connection) must not hold Shutdown until the request timeout.
func TestShutdownClosesSpareConnections(t *testing.T) {
	t.Parallel()
	e := newOpsEnv(t, opsOptions{})
	url := e.serve(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if resp, b := e.chat(t); resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %s", took)
	}
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("the spare connection is still open")
	}
}

// /health/ready reports the devices the engine found, in every state.
func TestReadinessReportsDevices(t *testing.T) {
	t.Parallel()
	devs := []server.Device{
		{Name: "CPU", Description: "AMD EPYC", Type: "cpu", MemoryTotalBytes: 1 << 34, MemoryFreeBytes: 1 << 33},
		{Name: "CUDA0", Description: "NVIDIA H200", Type: "gpu", Library: "CUDA", ComputeCapability: "9.0", MemoryTotalBytes: 150 << 30, MemoryFreeBytes: 149 << 30, Layers: 17},
	}
	e := newOpsEnv(t, opsOptions{slots: 1, devices: devs})
	const want = `"devices":[{"name":"CPU","description":"AMD EPYC","type":"cpu","memory_total_bytes":17179869184,"memory_free_bytes":8589934592,"layers":0},` +
		`{"name":"CUDA0","description":"NVIDIA H200","type":"gpu","library":"CUDA","compute_capability":"9.0","memory_total_bytes":161061273600,"memory_free_bytes":159987531776,"layers":17}]}`
	resp, b := e.do(t, http.MethodGet, "/health/ready", "")
	if resp.StatusCode != http.StatusServiceUnavailable || string(b) != `{"status":"starting",`+want {
		t.Fatalf("starting: %d %s", resp.StatusCode, b)
	}
	e.srv.MarkReady()
	resp, b = e.do(t, http.MethodGet, "/health/ready", "")
	if resp.StatusCode != http.StatusOK || string(b) != `{"status":"ready",`+want {
		t.Fatalf("ready: %d %s", resp.StatusCode, b)
	}
}
