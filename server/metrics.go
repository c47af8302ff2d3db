package server

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/admission"
)

// LoadReporter reports the scheduler's load. MUST be goroutine-safe and
// cheap: every /metrics scrape calls it. *batching.Scheduler satisfies it.
type LoadReporter interface {
	Stats() batching.Stats
}

// Metrics holds the request metrics behind GET /metrics. It is the
// scheduler's batching.Observer (pass the same value to batching.Config and
// Deps.Metrics) and also counts the server's own rejections. Goroutine-safe;
// recording never blocks. Gauges are read from cached values at scrape time
// (scheduler stats, the last GPU sample): a scrape never waits on the
// engine or calls NVML.
type Metrics struct {
	reg *prometheus.Registry
	// process holds the Go runtime and process collectors, gathered at most
	// once per processTTL: reading /proc is most of a scrape's cost.
	process *cachedGatherer

	ttft, itl, e2e, queue                    prometheus.Histogram
	promptTokens, generatedTokens, cachedTok prometheus.Counter
	decisions, finished                      *prometheus.CounterVec
}

// NewMetrics makes the request metrics and their registry (with the Go
// runtime and process collectors).
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		ttft: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nextact_time_to_first_token_seconds",
			Help:    "Time from submission to the first generated text, queueing included.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80},
		}),
		itl: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nextact_inter_token_latency_seconds",
			Help:    "Mean time between generated tokens after the first, one observation per request.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1},
		}),
		e2e: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nextact_request_latency_seconds",
			Help:    "Time from submission to the end of generation, for requests that got a slot.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 600},
		}),
		queue: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nextact_queue_time_seconds",
			Help:    "Time requests waited for a slot.",
			Buckets: []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
		promptTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nextact_prompt_tokens_total", Help: "Prompt tokens of requests that got a slot.",
		}),
		generatedTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nextact_generation_tokens_total", Help: "Generated tokens.",
		}),
		cachedTok: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nextact_cached_prompt_tokens_total", Help: "Prompt tokens served from reused KV instead of computed.",
		}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nextact_admission_decisions_total",
			Help: "Admission decisions by outcome (admitted, queued, rejected), reason and priority. A queued request that later times out or is preempted also counts as rejected.",
		}, []string{"outcome", "reason", "priority"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nextact_requests_finished_total",
			Help: "Accepted requests by how they ended: stop, length, cancelled, error, shutdown, rejected.",
		}, []string{"reason"}),
	}
	m.reg.MustRegister(m.ttft, m.itl, m.e2e, m.queue, m.promptTokens, m.generatedTokens, m.cachedTok,
		m.decisions, m.finished)
	proc := prometheus.NewRegistry()
	proc.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.process = &cachedGatherer{g: proc, ttl: processTTL}
	return m
}

// processTTL is how long the Go runtime and process metrics are reused.
const processTTL = time.Second

// cachedGatherer reuses what g gathered for ttl.
type cachedGatherer struct {
	g   prometheus.Gatherer
	ttl time.Duration

	mu   sync.Mutex
	at   time.Time
	fams []*dto.MetricFamily
	err  error
}

func (c *cachedGatherer) Gather() ([]*dto.MetricFamily, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); c.fams == nil || now.Sub(c.at) >= c.ttl {
		c.fams, c.err = c.g.Gather()
		c.at = now
	}
	return c.fams, c.err
}

// Decided counts an admission decision.
func (m *Metrics) Decided(d admission.Decision) {
	m.decisions.WithLabelValues(string(d.Outcome), d.Reason, d.Priority.String()).Inc()
}

// Finished records an accepted request's end.
func (m *Metrics) Finished(r batching.Report) {
	m.finished.WithLabelValues(r.Finish.String()).Inc()
	t := r.Timing
	if t.Admitted.IsZero() {
		return // never ran: dropped or cancelled in the queue
	}
	m.queue.Observe(t.Admitted.Sub(t.Submitted).Seconds())
	m.e2e.Observe(t.Finished.Sub(t.Submitted).Seconds())
	m.promptTokens.Add(float64(r.Usage.PromptTokens))
	m.generatedTokens.Add(float64(r.Usage.CompletionTokens))
	m.cachedTok.Add(float64(r.Usage.CachedTokens))
	if t.FirstToken.IsZero() {
		return
	}
	m.ttft.Observe(t.FirstToken.Sub(t.Submitted).Seconds())
	if n := r.Usage.CompletionTokens; n > 1 {
		m.itl.Observe(t.Finished.Sub(t.FirstToken).Seconds() / float64(n-1))
	}
}

var _ batching.Observer = (*Metrics)(nil)

// handler serves the exposition, uncompressed: it is small, scraped often
// and mostly in-cluster, and gzip was a quarter of a scrape's CPU.
func (m *Metrics) handler() fiber.Handler {
	g := prometheus.Gatherers{m.reg, m.process}
	return adaptor.HTTPHandler(promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError, DisableCompression: true,
	}))
}

// Descriptions of the gauges read at scrape time. The vllm: names are the
// model-server protocol of the Gateway API Inference Extension.
var (
	descWaiting = prometheus.NewDesc("vllm:num_requests_waiting", "Requests waiting for a slot.", nil, nil)
	descRunning = prometheus.NewDesc("vllm:num_requests_running", "Requests holding a slot.", nil, nil)
	descKVUsage = prometheus.NewDesc("vllm:kv_cache_usage_perc",
		"Fraction (0-1) of the KV capacity reserved by running requests (prompt plus max_tokens).", nil, nil)
	descLoRA = prometheus.NewDesc("vllm:lora_requests_info",
		"LoRA adapters of running and waiting requests; the value is the time of the report.",
		[]string{"running_lora_adapters", "waiting_lora_adapters", "max_lora"}, nil)
	descSlots      = prometheus.NewDesc("nextact_slots", "Sequences decoded together.", nil, nil)
	descQueueCap   = prometheus.NewDesc("nextact_queue_capacity", "Requests that may wait for a slot.", nil, nil)
	descReserved   = prometheus.NewDesc("nextact_kv_reserved_tokens", "Prompt plus max_tokens of running and waiting requests.", nil, nil)
	descCapacity   = prometheus.NewDesc("nextact_kv_capacity_tokens", "Tokens the KV cache holds: slots times context per slot.", nil, nil)
	descDrain      = prometheus.NewDesc("nextact_drain_rate", "Requests leaving the scheduler per second over the last 10 s.", nil, nil)
	descReady      = prometheus.NewDesc("nextact_ready", "1 when /health/ready answers 200.", nil, nil)
	descSessions   = prometheus.NewDesc("nextact_sessions_open", "Shopper sessions held (expired ones until the next sweep).", nil, nil)
	descSessBytes  = prometheus.NewDesc("nextact_session_history_bytes", "Text the open sessions keep: personas, pages, actions, rationales.", nil, nil)
	descResident   = prometheus.NewDesc("nextact_kv_idle_resident_tokens", "KV tokens kept in idle slots for prefix reuse.", nil, nil)
	descDraining   = prometheus.NewDesc("nextact_draining", "1 while draining for shutdown.", nil, nil)
	descGPUUp      = prometheus.NewDesc("nextact_gpu_telemetry_available", "1 when NVML telemetry is available.", nil, nil)
	descGPUAge     = prometheus.NewDesc("nextact_gpu_sample_age_seconds", "Age of the last GPU sample; admission counts a stale one as saturated.", nil, nil)
	gpuLabels      = []string{"gpu", "uuid"}
	descGPUInfo    = prometheus.NewDesc("nextact_gpu_info", "GPU names.", []string{"gpu", "uuid", "name"}, nil)
	descGPUMemUsed = prometheus.NewDesc("nextact_gpu_memory_used_bytes", "GPU memory in use.", gpuLabels, nil)
	descGPUMemTot  = prometheus.NewDesc("nextact_gpu_memory_total_bytes", "GPU memory.", gpuLabels, nil)
	descGPUUtil    = prometheus.NewDesc("nextact_gpu_utilization_ratio", "Fraction of the last sample period the GPU was busy.", gpuLabels, nil)
	descGPUTemp    = prometheus.NewDesc("nextact_gpu_temperature_celsius", "GPU temperature.", gpuLabels, nil)
	descGPUPower   = prometheus.NewDesc("nextact_gpu_power_watts", "GPU power draw.", gpuLabels, nil)
	descGPUReasons = prometheus.NewDesc("nextact_gpu_clock_event_reasons", "NVML clock-event (throttle) reasons bitmask.", gpuLabels, nil)
	descGPUThrot   = prometheus.NewDesc("nextact_gpu_throttled", "1 while the GPU is throttled, by cause (thermal, power).",
		[]string{"gpu", "uuid", "cause"}, nil)
)

// gauges is the collector of values read at scrape time.
type gauges struct {
	s    *Server
	load LoadReporter
	gpu  admission.GPUSignals
}

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWaiting, descRunning, descKVUsage, descLoRA, descSlots, descQueueCap,
		descReserved, descCapacity, descDrain, descReady, descSessions, descSessBytes, descResident, descDraining, descGPUUp, descGPUAge, descGPUInfo,
		descGPUMemUsed, descGPUMemTot, descGPUUtil, descGPUTemp, descGPUPower, descGPUReasons, descGPUThrot} {
		ch <- d
	}
}

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	// Label values come from outside (NVML's device names and UUIDs):
	// invalid UTF-8 is replaced, and a metric that still cannot be built
	// is reported as invalid while the rest of the scrape goes on, where
	// MustNewConstMetric panicked (and the gauges after it were lost).
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		for i, l := range labels {
			labels[i] = strings.ToValidUTF8(l, "\uFFFD")
		}
		m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, labels...)
		if err != nil {
			m = prometheus.NewInvalidMetric(d, err)
		}
		ch <- m
	}
	now := g.s.now()
	state := g.s.readiness()
	gauge(descReady, boolValue(state == stateReady))
	gauge(descDraining, boolValue(state == stateDraining))
	open, bytes := g.s.sessions.held()
	gauge(descSessions, float64(open))
	gauge(descSessBytes, float64(bytes))
	if g.load != nil {
		st := g.load.Stats()
		gauge(descWaiting, float64(st.Waiting))
		gauge(descRunning, float64(st.Running))
		gauge(descKVUsage, st.KVUsage())
		gauge(descLoRA, float64(now.UnixNano())/1e9, "", "", "0")
		gauge(descSlots, float64(st.Slots))
		gauge(descQueueCap, float64(st.QueueSize))
		gauge(descReserved, float64(st.ReservedTokens))
		gauge(descCapacity, float64(st.CapacityTokens))
		gauge(descDrain, st.DrainRate)
		gauge(descResident, float64(st.IdleResidentTokens))
	}
	sample, ok := admission.GPUSample{}, false
	if g.gpu != nil {
		sample, ok = g.gpu.Snapshot()
	}
	gauge(descGPUUp, boolValue(ok))
	if !ok {
		return
	}
	if !sample.At.IsZero() {
		gauge(descGPUAge, max(now.Sub(sample.At).Seconds(), 0))
	}
	for _, d := range sample.Devices {
		idx := strconv.Itoa(d.Index)
		gauge(descGPUInfo, 1, idx, d.UUID, d.Name)
		gauge(descGPUMemUsed, float64(d.MemoryUsed), idx, d.UUID)
		gauge(descGPUMemTot, float64(d.MemoryTotal), idx, d.UUID)
		gauge(descGPUUtil, d.Utilization, idx, d.UUID)
		gauge(descGPUTemp, d.TemperatureC, idx, d.UUID)
		gauge(descGPUPower, d.PowerW, idx, d.UUID)
		gauge(descGPUReasons, float64(d.ClockEventReasons), idx, d.UUID)
		gauge(descGPUThrot, boolValue(d.ThermalThrottle), idx, d.UUID, "thermal")
		gauge(descGPUThrot, boolValue(d.PowerThrottle), idx, d.UUID, "power")
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
