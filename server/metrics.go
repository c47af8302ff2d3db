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

	// Per model (label "model"); decisions are the server's and every
	// scheduler's admission decisions, without a model label (the
	// server's own, such as rate limits, come before a model is known).
	ttft, itl, e2e, queue                    *prometheus.HistogramVec
	promptTokens, generatedTokens, cachedTok *prometheus.CounterVec
	decisions, finished                      *prometheus.CounterVec
}

// modelLabel is the label of per-model metrics.
var modelLabel = []string{"model"}

// NewMetrics makes the request metrics and their registry (with the Go
// runtime and process collectors).
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nextact_time_to_first_token_seconds",
			Help:    "Time from submission to the first generated text, queueing included.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80},
		}, modelLabel),
		itl: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nextact_inter_token_latency_seconds",
			Help:    "Mean time between generated tokens after the first, one observation per request.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1},
		}, modelLabel),
		e2e: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nextact_request_latency_seconds",
			Help:    "Time from submission to the end of generation, for requests that got a slot.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 600},
		}, modelLabel),
		queue: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nextact_queue_time_seconds",
			Help:    "Time requests waited for a slot, the wait for their model's load included.",
			Buckets: []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, modelLabel),
		promptTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nextact_prompt_tokens_total", Help: "Prompt tokens of requests that got a slot.",
		}, modelLabel),
		generatedTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nextact_generation_tokens_total", Help: "Generated tokens.",
		}, modelLabel),
		cachedTok: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nextact_cached_prompt_tokens_total", Help: "Prompt tokens served from reused KV instead of computed.",
		}, modelLabel),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nextact_admission_decisions_total",
			Help: "Admission decisions by outcome (admitted, queued, rejected), reason and priority. A queued request that later times out or is preempted also counts as rejected.",
		}, []string{"outcome", "reason", "priority"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nextact_requests_finished_total",
			Help: "Accepted requests by how they ended: stop, length, cancelled, error, shutdown, rejected.",
		}, []string{"reason", "model"}),
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

// Finished records an accepted request's end, with an empty model label
// (a server of one model may pass the Metrics itself as the scheduler's
// Observer; see Model).
func (m *Metrics) Finished(r batching.Report) { m.finish("", r) }

// Model is the Observer of one model's scheduler: its requests' metrics
// carry the model's label.
func (m *Metrics) Model(id string) batching.Observer { return modelObserver{m: m, id: id} }

type modelObserver struct {
	m  *Metrics
	id string
}

func (o modelObserver) Decided(d admission.Decision) { o.m.Decided(d) }
func (o modelObserver) Finished(r batching.Report)   { o.m.finish(o.id, r) }

func (m *Metrics) finish(model string, r batching.Report) {
	m.finished.WithLabelValues(r.Finish.String(), model).Inc()
	t := r.Timing
	if t.Admitted.IsZero() {
		return // never ran: dropped or cancelled in the queue
	}
	m.queue.WithLabelValues(model).Observe(t.Admitted.Sub(t.Submitted).Seconds())
	m.e2e.WithLabelValues(model).Observe(t.Finished.Sub(t.Submitted).Seconds())
	m.promptTokens.WithLabelValues(model).Add(float64(r.Usage.PromptTokens))
	m.generatedTokens.WithLabelValues(model).Add(float64(r.Usage.CompletionTokens))
	m.cachedTok.WithLabelValues(model).Add(float64(r.Usage.CachedTokens))
	if t.FirstToken.IsZero() {
		return
	}
	m.ttft.WithLabelValues(model).Observe(t.FirstToken.Sub(t.Submitted).Seconds())
	if n := r.Usage.CompletionTokens; n > 1 {
		m.itl.WithLabelValues(model).Observe(t.Finished.Sub(t.FirstToken).Seconds() / float64(n-1))
	}
}

var (
	_ batching.Observer = (*Metrics)(nil)
	_ batching.Observer = modelObserver{}
)

// ModelLoads reports the load of every loaded model's scheduler. MUST be
// goroutine-safe and cheap: every /metrics scrape calls it.
type ModelLoads interface {
	ModelLoads() []ModelLoad
}

// ModelLoad is one model's scheduler load.
type ModelLoad struct {
	Model string
	Stats batching.Stats
}

// singleLoad is Deps.Load as ModelLoads.
type singleLoad struct {
	model string
	load  LoadReporter
}

func (l singleLoad) ModelLoads() []ModelLoad {
	return []ModelLoad{{Model: l.model, Stats: l.load.Stats()}}
}

// loadsOf is the load gauges' source: Deps.Loads, or Deps.Load labelled
// with the one model's ID; nil for none.
func loadsOf(d Deps) ModelLoads {
	switch {
	case d.Loads != nil:
		return d.Loads
	case d.Load != nil:
		id := ""
		if len(d.Models) == 1 {
			id = d.Models[0].ID
		}
		return singleLoad{model: id, load: d.Load}
	}
	return nil
}

// handler serves the exposition, uncompressed: it is small, scraped often
// and mostly in-cluster, and gzip was a quarter of a scrape's CPU.
func (m *Metrics) handler() fiber.Handler {
	g := prometheus.Gatherers{m.reg, m.process}
	return adaptor.HTTPHandler(promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError, DisableCompression: true,
	}))
}

// Descriptions of the gauges read at scrape time. The vllm: names are the
// model-server protocol of the Gateway API Inference Extension: each keeps
// one series, the sum over the loaded models' schedulers (the KV usage is
// the running requests' reservations over the summed capacity). The
// nextact_ load gauges are per model.
var (
	descWaiting = prometheus.NewDesc("vllm:num_requests_waiting", "Requests waiting for a slot, all models together.", nil, nil)
	descRunning = prometheus.NewDesc("vllm:num_requests_running", "Requests holding a slot, all models together.", nil, nil)
	descKVUsage = prometheus.NewDesc("vllm:kv_cache_usage_perc",
		"Fraction (0-1) of the KV capacity reserved by running requests (prompt plus max_tokens), over the loaded models' KV together.", nil, nil)
	descLoRA = prometheus.NewDesc("vllm:lora_requests_info",
		"LoRA adapters of running and waiting requests; the value is the time of the report.",
		[]string{"running_lora_adapters", "waiting_lora_adapters", "max_lora"}, nil)
	descSlots      = prometheus.NewDesc("nextact_slots", "Sequences decoded together, per loaded model.", modelLabel, nil)
	descQueueCap   = prometheus.NewDesc("nextact_queue_capacity", "Requests that may wait for a slot, per loaded model.", modelLabel, nil)
	descReserved   = prometheus.NewDesc("nextact_kv_reserved_tokens", "Prompt plus max_tokens of running and waiting requests, per loaded model.", modelLabel, nil)
	descCapacity   = prometheus.NewDesc("nextact_kv_capacity_tokens", "Tokens the KV cache holds: slots times context per slot, per loaded model.", modelLabel, nil)
	descDrain      = prometheus.NewDesc("nextact_drain_rate", "Requests leaving the scheduler per second over the last 10 s, per loaded model.", modelLabel, nil)
	descReady      = prometheus.NewDesc("nextact_ready", "1 when /health/ready answers 200.", nil, nil)
	descSessions   = prometheus.NewDesc("nextact_sessions_open", "Shopper sessions held (expired ones until the next sweep).", nil, nil)
	descSessBytes  = prometheus.NewDesc("nextact_session_history_bytes", "Text the open sessions keep: personas, pages, actions, rationales.", nil, nil)
	descResident   = prometheus.NewDesc("nextact_kv_idle_resident_tokens", "KV tokens kept in idle slots for prefix reuse, per loaded model.", modelLabel, nil)
	descDraining   = prometheus.NewDesc("nextact_draining", "1 while draining for shutdown.", nil, nil)
	descHostBytes  = prometheus.NewDesc("nextact_kv_host_bytes", "KV saved in host memory (the prefix cache's host tier), per loaded model.", modelLabel, nil)
	descHostBudget = prometheus.NewDesc("nextact_kv_host_budget_bytes", "Host memory the host tier may take (--host-kv-budget; 0: off).", modelLabel, nil)
	descHostEntry  = prometheus.NewDesc("nextact_kv_host_entries", "Saved KV entries in the host tier.", modelLabel, nil)
	descHostSaves  = prometheus.NewDesc("nextact_kv_host_saves_total", "Idle slots' KV saved to host memory before the slot was reused.", modelLabel, nil)
	descHostHits   = prometheus.NewDesc("nextact_kv_host_restores_total", "KV restored from host memory instead of prefilled.", modelLabel, nil)
	descHostSaved  = prometheus.NewDesc("nextact_kv_host_saved_bytes_total", "Bytes of KV saved to host memory.", modelLabel, nil)
	descHostRest   = prometheus.NewDesc("nextact_kv_host_restored_bytes_total", "Bytes of KV restored from host memory.", modelLabel, nil)
	descHostTokens = prometheus.NewDesc("nextact_kv_host_restored_tokens_total", "Prompt tokens restored from host memory, not prefilled.", modelLabel, nil)
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
	s     *Server
	loads ModelLoads
	gpu   admission.GPUSignals
}

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWaiting, descRunning, descKVUsage, descLoRA, descSlots, descQueueCap,
		descReserved, descCapacity, descDrain, descReady, descSessions, descSessBytes, descResident, descDraining,
		descHostBytes, descHostBudget, descHostEntry, descHostSaves, descHostHits, descHostSaved, descHostRest, descHostTokens, descGPUUp, descGPUAge, descGPUInfo,
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
	if g.loads != nil {
		var sum batching.Stats
		for _, l := range g.loads.ModelLoads() {
			st := l.Stats
			sum.Waiting += st.Waiting
			sum.Running += st.Running
			sum.RunningReservedTokens += st.RunningReservedTokens
			sum.CapacityTokens += st.CapacityTokens
			gauge(descSlots, float64(st.Slots), l.Model)
			gauge(descQueueCap, float64(st.QueueSize), l.Model)
			gauge(descReserved, float64(st.ReservedTokens), l.Model)
			gauge(descCapacity, float64(st.CapacityTokens), l.Model)
			gauge(descDrain, st.DrainRate, l.Model)
			gauge(descResident, float64(st.IdleResidentTokens), l.Model)
			h := st.Host
			gauge(descHostBytes, float64(h.Bytes), l.Model)
			gauge(descHostBudget, float64(h.BudgetBytes), l.Model)
			gauge(descHostEntry, float64(h.Entries), l.Model)
			for d, v := range map[*prometheus.Desc]uint64{descHostSaves: h.Saves, descHostHits: h.Restores,
				descHostSaved: h.SavedBytes, descHostRest: h.RestoredBytes, descHostTokens: h.RestoredTokens} {
				m, err := prometheus.NewConstMetric(d, prometheus.CounterValue, float64(v), strings.ToValidUTF8(l.Model, "\uFFFD"))
				if err != nil {
					m = prometheus.NewInvalidMetric(d, err)
				}
				ch <- m
			}
		}
		gauge(descWaiting, float64(sum.Waiting))
		gauge(descRunning, float64(sum.Running))
		gauge(descKVUsage, sum.KVUsage())
		gauge(descLoRA, float64(now.UnixNano())/1e9, "", "", "0")
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
