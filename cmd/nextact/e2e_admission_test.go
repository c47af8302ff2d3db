package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// outcome is what one client of the burst saw.
type outcome struct {
	status     int
	code       string // error code, "" for 200
	retryAfter string
	err        error // transport error
}

// A burst of 500 concurrent requests against 4 slots and a queue of 16:
// every request gets 200, 429 or 503 (with Retry-After), none hangs or
// fails at the transport level, and /metrics agrees with what the clients
// saw.
func TestBurstAgainstSmallQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("500 requests on the real engine")
	}
	keyFile := filepath.Join(t.TempDir(), "keys")
	keys := "sk-eval name=eval priority=high\nsk-load name=load priority=low rate=100 burst=120\n"
	if err := os.WriteFile(keyFile, []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testConfig()
	c.Slots, c.Queue, c.StepTokens = 4, 16, 64
	c.APIKeyFile = keyFile
	c.MaxQueueWait = 30 * time.Second
	c.GPUSampleInterval = time.Second // no driver here: telemetry reports itself unavailable
	ts := startServer(t, c)

	url := ts.URL + "/v1/chat/completions"
	body, _ := json.Marshal(chatReq(ts.modelID(), "hi", map[string]any{"max_tokens": 4}))
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 600}}
	send := func(key string) outcome {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return outcome{err: err}
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := client.Do(req)
		if err != nil {
			return outcome{err: err}
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			return outcome{err: err}
		}
		o := outcome{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
		if o.status != http.StatusOK {
			var e struct {
				Error struct{ Code string } `json:"error"`
			}
			if err := json.Unmarshal(data, &e); err != nil {
				o.err = fmt.Errorf("status %d, body not an error: %q", o.status, data)
			}
			o.code = e.Error.Code
		}
		return o
	}
	for _, key := range []string{"", "sk-wrong"} {
		if o := send(key); o.status != http.StatusUnauthorized || o.code != "invalid_api_key" {
			t.Errorf("key %q: %+v", key, o)
		}
	}
	if o := send("sk-eval"); o.status != http.StatusOK {
		t.Fatalf("a right key: %+v", o)
	}

	const n = 500
	outs := make([]outcome, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		key := "sk-load"
		if i%5 == 0 {
			key = "sk-eval"
		}
		wg.Go(func() {
			<-start
			outs[i] = send(key)
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(began)

	byStatus := map[int]int{}
	byCode := map[string]int{}
	for i, o := range outs {
		if o.err != nil {
			t.Errorf("request %d: %v", i, o.err)
			continue
		}
		byStatus[o.status]++
		switch o.status {
		case http.StatusOK:
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			byCode[o.code]++
			if s, err := strconv.Atoi(o.retryAfter); err != nil || s < 1 {
				t.Errorf("request %d: %d %s with Retry-After %q", i, o.status, o.code, o.retryAfter)
			}
		default:
			t.Errorf("request %d: status %d %s", i, o.status, o.code)
		}
	}
	t.Logf("500 requests in %s: statuses %v, refusals %v", took.Round(time.Millisecond), byStatus, byCode)
	if byStatus[http.StatusOK] < c.Slots || byStatus[http.StatusTooManyRequests] == 0 || byStatus[http.StatusServiceUnavailable] == 0 {
		t.Errorf("want some of each of 200, 429 and 503: %v", byStatus)
	}

	waitIdle(t, ts)
	m := scrape(t, ts.URL)
	if v := sum(m, "vllm:num_requests_running") + sum(m, "vllm:num_requests_waiting"); v != 0 {
		t.Errorf("running+waiting after the burst: %g", v)
	}
	// The burst plus the one right-key request before it.
	admitted := sum(m, "nextact_admission_decisions_total", "outcome=admitted") + sum(m, "nextact_admission_decisions_total", "outcome=queued")
	dropped := sum(m, "nextact_admission_decisions_total", "outcome=rejected", "reason=queue_timeout") +
		sum(m, "nextact_admission_decisions_total", "outcome=rejected", "reason=preempted")
	ok := float64(byStatus[http.StatusOK] + 1)
	if admitted-dropped != ok {
		t.Errorf("metrics admitted %g - dropped %g, clients got %g 200s", admitted, dropped, ok)
	}
	if done := sum(m, "nextact_requests_finished_total", "reason=stop") + sum(m, "nextact_requests_finished_total", "reason=length"); done != ok {
		t.Errorf("metrics finished %g, clients got %g 200s", done, ok)
	}
	for code, n := range byCode {
		reason := code
		if code == "rate_limit_exceeded" {
			reason = "rate_limited"
		}
		if got := sum(m, "nextact_admission_decisions_total", "outcome=rejected", "reason="+reason); got != float64(n) {
			t.Errorf("reason %s: metrics %g, clients %d", reason, got, n)
		}
	}
	if got := sum(m, "nextact_admission_decisions_total", "outcome=rejected"); got != float64(byStatus[429]+byStatus[503]) {
		t.Errorf("metrics rejected %g, clients got %d 429s and 503s", got, byStatus[429]+byStatus[503])
	}
	if got := sum(m, "nextact_time_to_first_token_seconds"); got != ok {
		t.Errorf("TTFT observations %g, want %g", got, ok)
	}
	if got := sum(m, "nextact_gpu_telemetry_available"); got != 0 {
		t.Errorf("GPU telemetry available on a machine without a driver: %g", got)
	}
}

// scrape parses the server's /metrics.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sum adds the series of name whose labels include labels ("k=v");
// histograms count observations.
func sum(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	total := 0.0
	f := fams[name]
	if f == nil {
		return 0
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.GetGauge() != nil:
			total += m.GetGauge().GetValue()
		case m.GetCounter() != nil:
			total += m.GetCounter().GetValue()
		case m.GetHistogram() != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}
