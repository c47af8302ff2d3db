package server_test

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nextact/nextact/batching/admission"
	"github.com/nextact/nextact/server"
)

// fakeGPU is a fixed GPU sample.
type fakeGPU struct {
	sample admission.GPUSample
	ok     bool
}

func (g fakeGPU) Snapshot() (admission.GPUSample, bool) { return g.sample, g.ok }

// parseMetrics parses an exposition; value reads one series by labels.
func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, text)
	}
	return fams
}

// value returns the value of the series of name whose labels include
// labels ("k=v"); NaN when absent. Histograms give their count.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return math.NaN()
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
			return m.GetGauge().GetValue()
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return math.NaN()
}

func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	gpu := fakeGPU{ok: true, sample: admission.GPUSample{At: testNow.Add(-2 * time.Second), Devices: []admission.GPUDevice{{
		Index: 0, UUID: "GPU-x", Name: "NVIDIA H100", MemoryUsed: 60 << 30, MemoryTotal: 80 << 30, Utilization: 0.9,
		TemperatureC: 70, PowerW: 500, ClockEventReasons: 0x20, ThermalThrottle: true,
	}}}}
	e := newOpsEnv(t, opsOptions{slots: 1, queue: 4, gated: true, gpu: gpu,
		admission: admission.Config{IgnoreThrottle: true}})
	e.srv.MarkReady()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if resp, b := e.chat(t); resp.StatusCode != http.StatusOK {
				t.Errorf("%d %s", resp.StatusCode, b)
			}
		})
	}
	waitFor(t, "one running and two waiting", func() bool { st := e.sched.Stats(); return st.Running == 1 && st.Waiting == 2 })
	m := parseMetrics(t, e.metricsText(t))
	reserved := value(m, "nextact_kv_reserved_tokens")
	for name, want := range map[string]float64{
		"vllm:num_requests_running":       1,
		"vllm:num_requests_waiting":       2,
		"vllm:kv_cache_usage_perc":        reserved / 3 / testCtx,
		"nextact_kv_capacity_tokens":      testCtx,
		"nextact_slots":                   1,
		"nextact_queue_capacity":          4,
		"nextact_ready":                   1,
		"nextact_draining":                0,
		"nextact_gpu_telemetry_available": 1,
		"nextact_gpu_sample_age_seconds":  2,
	} {
		if got := value(m, name); got != want {
			t.Errorf("%s = %g, want %g", name, got, want)
		}
	}
	if reserved <= 3*2 {
		t.Errorf("reserved tokens %g do not count the prompts", reserved)
	}
	if got := value(m, "vllm:lora_requests_info", "running_lora_adapters=", "waiting_lora_adapters=", "max_lora=0"); got != float64(testNow.Unix()) {
		t.Errorf("lora info %g", got)
	}
	dev := []string{"gpu=0", "uuid=GPU-x"}
	for name, want := range map[string]float64{
		"nextact_gpu_memory_used_bytes":   60 << 30,
		"nextact_gpu_memory_total_bytes":  80 << 30,
		"nextact_gpu_utilization_ratio":   0.9,
		"nextact_gpu_temperature_celsius": 70,
		"nextact_gpu_power_watts":         500,
		"nextact_gpu_clock_event_reasons": 0x20,
	} {
		if got := value(m, name, dev...); got != want {
			t.Errorf("%s = %g, want %g", name, got, want)
		}
	}
	if value(m, "nextact_gpu_throttled", append(dev, "cause=thermal")...) != 1 || value(m, "nextact_gpu_throttled", append(dev, "cause=power")...) != 0 {
		t.Error("throttle gauges wrong")
	}
	if value(m, "nextact_gpu_info", "name=NVIDIA H100") != 1 {
		t.Error("gpu info missing")
	}

	e.release()
	wg.Wait()
	m = parseMetrics(t, e.metricsText(t))
	decided := func(outcome, reason string) float64 {
		return value(m, "nextact_admission_decisions_total", "outcome="+outcome, "reason="+reason, "priority=normal")
	}
	if decided("admitted", "slot_free") != 1 || decided("queued", "slots_busy") != 2 {
		t.Errorf("decisions:\n%s", grep(e.metricsText(t), "decisions_total{"))
	}
	finished := orZero(value(m, "nextact_requests_finished_total", "reason=length")) + orZero(value(m, "nextact_requests_finished_total", "reason=stop"))
	if finished != 3 {
		t.Errorf("finished %g", finished)
	}
	for _, h := range []string{"nextact_queue_time_seconds", "nextact_time_to_first_token_seconds", "nextact_request_latency_seconds", "nextact_inter_token_latency_seconds"} {
		if got := value(m, h); got != 3 {
			t.Errorf("%s has %g observations, want 3", h, got)
		}
	}
	if got := value(m, "nextact_generation_tokens_total"); got != 6 {
		t.Errorf("generated tokens %g, want 6", got)
	}
	if got := value(m, "nextact_prompt_tokens_total"); got*3 != 3*(reserved-6) {
		t.Errorf("prompt tokens %g, want %g", got, reserved-6)
	}
	if got := value(m, "vllm:num_requests_running"); got != 0 {
		t.Errorf("running after the end: %g", got)
	}
}

func orZero(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return v
}

// Without telemetry only the availability gauge says so.
func TestMetricsWithoutGPU(t *testing.T) {
	t.Parallel()
	e := newOpsEnv(t, opsOptions{gpu: fakeGPU{}})
	text := e.metricsText(t)
	m := parseMetrics(t, text)
	if value(m, "nextact_gpu_telemetry_available") != 0 || strings.Contains(text, "nextact_gpu_memory") {
		t.Errorf("GPU metrics without telemetry:\n%s", grep(text, "gpu"))
	}
	if value(m, "nextact_ready") != 0 {
		t.Error("ready before MarkReady")
	}
}

// The exposition passes promtool's checks (Debian's prometheus package;
// make deps installs it). Outside CI a machine without promtool skips. The
// one lint promtool reports is by design: the Gateway API Inference
// Extension's protocol names its metrics vllm:..., and promtool's linter
// wants no colon in names (a convention for recording rules). Every other
// lint fails the test, and so does anything that does not parse (exit 1).
func TestPromtoolCheckMetrics(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is missing in CI: make deps installs Debian's prometheus package")
		}
		t.Skip("promtool not installed (apt-get install prometheus, or make deps); CI runs this check")
	}
	gpu := fakeGPU{ok: true, sample: admission.GPUSample{At: testNow, Devices: []admission.GPUDevice{
		{Index: 0, UUID: "GPU-a", Name: "A", MemoryTotal: 1}, {Index: 1, UUID: "GPU-b", Name: "B", MemoryTotal: 1},
	}}}
	e := newOpsEnv(t, opsOptions{gpu: gpu, cfg: server.Config{RateLimit: 1}})
	e.chat(t)
	e.chat(t) // rate limited
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(e.metricsText(t))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return
	case !errors.As(err, &exit):
		t.Fatal(err)
	case exit.ExitCode() != 3: // 3: lint problems only
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	colons := 0
	for _, l := range lines {
		name, problem, _ := strings.Cut(l, " ")
		if !strings.HasPrefix(name, "vllm:") || problem != "metric names should not contain ':'" {
			t.Errorf("promtool: %s", l)
		}
		colons++
	}
	if colons != 4 {
		t.Errorf("want the 4 vllm: names reported, got:\n%s", out.String())
	}
}

// Overload errors become 503 with the error's Retry-After; a request
// dropped from the queue after its maximum wait too, streams included.
func TestOverloadResponses(t *testing.T) {
	t.Parallel()
	throttled := &server.Model{ID: "throttled", ContextLength: testCtx, Format: "llama3", Tokenizer: &fakeTokenizer{},
		Generator: errGenerator{err: &admission.OverloadError{Reason: admission.ReasonGPUThrottled, RetryAfter: 7 * time.Second}}}
	e := newOpsEnv(t, opsOptions{slots: 1, gated: true, extraModels: []*server.Model{throttled},
		admission: admission.Config{MaxQueueWait: time.Second}})
	resp, b := e.do(t, http.MethodPost, "/v1/chat/completions", strings.Replace(chatBody("hi", ""), testModel, "throttled", 1))
	wantError(t, resp, b, http.StatusServiceUnavailable, admission.ReasonGPUThrottled, "7")
	if typ := decodeErr(t, b).Error.Type; typ != "overloaded" {
		t.Errorf("type %q", typ)
	}

	var wg sync.WaitGroup
	wg.Go(func() { e.chat(t) }) // holds the only slot
	waitFor(t, "the slot to be taken", func() bool { return e.sched.Stats().Running == 1 })
	var queued, streamed []byte
	var queuedResp *http.Response
	wg.Go(func() { queuedResp, queued = e.chat(t) })
	wg.Go(func() {
		_, streamed = e.do(t, http.MethodPost, "/v1/chat/completions", chatBody("hi", `"max_tokens":2,"stream":true`))
	})
	waitFor(t, "two waiting", func() bool { return e.sched.Stats().Waiting == 2 })
	e.clock.Advance(2 * time.Second)
	e.gate <- struct{}{} // one step, then the queue is checked
	e.gate <- struct{}{}
	waitFor(t, "the queue to be dropped", func() bool { return e.sched.Stats().Waiting == 0 })
	e.release()
	wg.Wait()
	// Nothing drained yet, 2 s after start: nothing known, 1 s.
	wantError(t, queuedResp, queued, http.StatusServiceUnavailable, admission.ReasonQueueTimeout, "1")
	if !strings.Contains(string(streamed), `"code":"queue_timeout"`) || !strings.Contains(string(streamed), "data: [DONE]") {
		t.Errorf("stream: %s", streamed)
	}
	m := parseMetrics(t, e.metricsText(t))
	if got := value(m, "nextact_admission_decisions_total", "outcome=rejected", "reason=queue_timeout"); got != 2 {
		t.Errorf("queue_timeout decisions %g", got)
	}
	if got := value(m, "nextact_requests_finished_total", "reason=rejected"); got != 2 {
		t.Errorf("rejected finishes %g", got)
	}
}

func TestHeaderLimit(t *testing.T) {
	t.Parallel()
	e := newOpsEnv(t, opsOptions{cfg: server.Config{HeaderLimit: 4096}})
	url := e.serve(t) + "/v1/chat/completions"
	post := func(header string) (*http.Response, []byte) {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(chatBody("hi", `"max_tokens":2`)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Pad", header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, b := post(strings.Repeat("a", 8000))
	wantError(t, resp, b, http.StatusRequestHeaderFieldsTooLarge, "request_header_too_large", "")
	if resp, b := post(strings.Repeat("a", 1000)); resp.StatusCode != http.StatusOK {
		t.Fatalf("small headers: %d %s", resp.StatusCode, b)
	}
}

// BenchmarkMetricsScrape is one /metrics scrape over HTTP, GPU gauges
// included: what a gateway scraping every 50 ms costs.
func BenchmarkMetricsScrape(b *testing.B) {
	gpu := fakeGPU{ok: true, sample: admission.GPUSample{At: testNow, Devices: []admission.GPUDevice{
		{Index: 0, UUID: "GPU-a", Name: "A", MemoryTotal: 1}, {Index: 1, UUID: "GPU-b", Name: "B", MemoryTotal: 1},
	}}}
	e := newOpsEnv(b, opsOptions{gpu: gpu})
	url := e.serve(b) + "/metrics"
	client := &http.Client{}
	b.ResetTimer()
	for b.Loop() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		b.SetBytes(n)
	}
}

// A GPU whose name or UUID is not valid UTF-8 (NVML returns bytes) is
// exposed with each run of bad bytes replaced by U+FFFD. Before the fix
// MustNewConstMetric panicked in the collector: client_golang v1.25
// recovers that (older releases did not, and the process died), but the
// scrape silently lost every GPU gauge from the bad device on.
func TestMetricsInvalidUTF8GPUName(t *testing.T) {
	t.Parallel()
	gpu := fakeGPU{ok: true, sample: admission.GPUSample{At: testNow, Devices: []admission.GPUDevice{
		{Index: 0, UUID: "GPU-\xfe1", Name: "NVIDIA \xff\xc3H200", MemoryTotal: 1},
	}}}
	e := newOpsEnv(t, opsOptions{gpu: gpu})
	m := parseMetrics(t, e.metricsText(t))
	if value(m, "nextact_gpu_info", "name=NVIDIA \uFFFDH200", "uuid=GPU-\uFFFD1") != 1 {
		t.Errorf("gpu info: %v", m["nextact_gpu_info"])
	}
	if value(m, "nextact_gpu_memory_total_bytes", "uuid=GPU-\uFFFD1") != 1 {
		t.Errorf("gpu memory: %v", m["nextact_gpu_memory_total_bytes"])
	}
}
