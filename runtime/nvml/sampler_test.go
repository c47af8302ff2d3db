package nvml_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/admission"
	"github.com/nextact/nextact/runtime/nvml"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const gib = 1 << 30

// gpuState is what a mock device reports; tests change it between samples.
type gpuState struct {
	used, total uint64
	util        uint32
	tempC       uint32
	powerMW     uint32
	reasons     uint64
	memErr      gonvml.Return
}

// fakeNVML is go-nvml's mock with every function the sampler calls set,
// over devices whose state tests set.
type fakeNVML struct {
	mu      sync.Mutex
	gpus    []gpuState
	initRet gonvml.Return
	symbols map[string]bool // symbols the "driver" exports
	lib     *mock.Interface
	devs    []*mock.Device
	clock   time.Time
}

func newFakeNVML(gpus ...gpuState) *fakeNVML {
	f := &fakeNVML{gpus: gpus, initRet: gonvml.SUCCESS, clock: t0, symbols: map[string]bool{
		"nvmlDeviceGetCurrentClocksEventReasons": true, "nvmlDeviceGetTemperature": true,
	}}
	for i := range gpus {
		f.devs = append(f.devs, f.device(i))
	}
	f.lib = &mock.Interface{
		InitFunc:     func() gonvml.Return { return f.initRet },
		ShutdownFunc: func() gonvml.Return { return gonvml.SUCCESS },
		DeviceGetCountFunc: func() (int, gonvml.Return) {
			return len(f.devs), gonvml.SUCCESS
		},
		DeviceGetHandleByIndexFunc: func(i int) (gonvml.Device, gonvml.Return) {
			if i < 0 || i >= len(f.devs) {
				return nil, gonvml.ERROR_INVALID_ARGUMENT
			}
			return f.devs[i], gonvml.SUCCESS
		},
		ExtensionsFunc: func() gonvml.ExtendedInterface {
			return &mock.ExtendedInterface{LookupSymbolFunc: func(name string) error {
				f.mu.Lock()
				defer f.mu.Unlock()
				if f.symbols[name] {
					return nil
				}
				return errors.New("undefined symbol " + name)
			}}
		},
	}
	return f
}

func (f *fakeNVML) state(i int) gpuState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gpus[i]
}

func (f *fakeNVML) set(i int, change func(*gpuState)) {
	f.mu.Lock()
	change(&f.gpus[i])
	f.mu.Unlock()
}

func (f *fakeNVML) device(i int) *mock.Device {
	uuid := "GPU-" + string(rune('a'+i))
	return &mock.Device{
		GetUUIDFunc: func() (string, gonvml.Return) { return uuid, gonvml.SUCCESS },
		GetNameFunc: func() (string, gonvml.Return) { return "NVIDIA H100 80GB HBM3", gonvml.SUCCESS },
		GetMemoryInfoFunc: func() (gonvml.Memory, gonvml.Return) {
			s := f.state(i)
			if s.memErr != gonvml.SUCCESS {
				return gonvml.Memory{}, s.memErr
			}
			return gonvml.Memory{Total: s.total, Used: s.used, Free: s.total - s.used}, gonvml.SUCCESS
		},
		GetUtilizationRatesFunc: func() (gonvml.Utilization, gonvml.Return) {
			return gonvml.Utilization{Gpu: f.state(i).util}, gonvml.SUCCESS
		},
		GetTemperatureFunc: func(gonvml.TemperatureSensors) (uint32, gonvml.Return) {
			return f.state(i).tempC, gonvml.SUCCESS
		},
		GetPowerUsageFunc: func() (uint32, gonvml.Return) { return f.state(i).powerMW, gonvml.SUCCESS },
		GetCurrentClocksEventReasonsFunc: func() (uint64, gonvml.Return) {
			return f.state(i).reasons, gonvml.SUCCESS
		},
		GetCurrentClocksThrottleReasonsFunc: func() (uint64, gonvml.Return) {
			return f.state(i).reasons, gonvml.SUCCESS
		},
	}
}

func (f *fakeNVML) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock
}

func (f *fakeNVML) advance(d time.Duration) {
	f.mu.Lock()
	f.clock = f.clock.Add(d)
	f.mu.Unlock()
}

// start runs a sampler over f; its ticker is slow so tests drive samples
// with Refresh.
func start(t *testing.T, f *fakeNVML) *nvml.Sampler {
	t.Helper()
	s := nvml.New(nvml.Config{Library: f.lib, Interval: time.Hour, Clock: f.now, Logger: zaptest.NewLogger(t)})
	s.Start()
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s
}

func healthy() gpuState {
	return gpuState{used: 20 * gib, total: 80 * gib, util: 42, tempC: 61, powerMW: 350500, reasons: gonvml.ClocksEventReasonGpuIdle}
}

func TestSnapshotFromMock(t *testing.T) {
	t.Parallel()
	hot := healthy()
	hot.reasons = gonvml.ClocksEventReasonSwThermalSlowdown | gonvml.ClocksEventReasonSwPowerCap
	f := newFakeNVML(healthy(), hot)
	s := start(t, f)
	got, ok := s.Snapshot()
	if !ok || !s.Available() {
		t.Fatal("telemetry unavailable over a working NVML")
	}
	if !got.At.Equal(t0) || len(got.Devices) != 2 {
		t.Fatalf("sample %+v", got)
	}
	d := got.Devices[0]
	want := admission.GPUDevice{Index: 0, UUID: "GPU-a", Name: "NVIDIA H100 80GB HBM3", MemoryUsed: 20 * gib, MemoryTotal: 80 * gib,
		Utilization: 0.42, TemperatureC: 61, PowerW: 350.5, ClockEventReasons: gonvml.ClocksEventReasonGpuIdle}
	if d != want {
		t.Errorf("device 0:\n got %+v\nwant %+v", d, want)
	}
	if h := got.Devices[1]; !h.ThermalThrottle || h.PowerThrottle || h.Index != 1 || h.UUID != "GPU-b" {
		t.Errorf("device 1: %+v", h)
	}
	if got.MemoryFraction() != 0.25 || !got.Throttled() {
		t.Errorf("memory %g throttled %v", got.MemoryFraction(), got.Throttled())
	}
}

// Which clock-event reasons count as throttling: thermal slowdowns, hardware
// slowdowns and power brakes; not a software power cap or idling.
func TestThrottleClassification(t *testing.T) {
	t.Parallel()
	cases := []struct {
		reasons        uint64
		thermal, power bool
	}{
		{gonvml.ClocksEventReasonNone, false, false},
		{gonvml.ClocksEventReasonGpuIdle | gonvml.ClocksEventReasonSwPowerCap | gonvml.ClocksEventReasonSyncBoost, false, false},
		{gonvml.ClocksEventReasonSwThermalSlowdown, true, false},
		{gonvml.ClocksThrottleReasonHwThermalSlowdown, true, false},
		{gonvml.ClocksThrottleReasonHwSlowdown, false, true},
		{gonvml.ClocksThrottleReasonHwPowerBrakeSlowdown | gonvml.ClocksEventReasonSwThermalSlowdown, true, true},
	}
	for _, tc := range cases {
		g := healthy()
		g.reasons = tc.reasons
		got, _ := start(t, newFakeNVML(g)).Snapshot()
		if d := got.Devices[0]; d.ThermalThrottle != tc.thermal || d.PowerThrottle != tc.power || d.ClockEventReasons != tc.reasons {
			t.Errorf("reasons %#x: %+v", tc.reasons, d)
		}
	}
}

// Drivers older than R535 lack the clock-event symbol: the sampler reads
// the throttle reasons instead and never calls what is missing.
func TestOldDriverSymbols(t *testing.T) {
	t.Parallel()
	g := healthy()
	g.reasons = gonvml.ClocksThrottleReasonHwPowerBrakeSlowdown
	f := newFakeNVML(g)
	f.symbols = map[string]bool{}
	s := start(t, f)
	got, _ := s.Snapshot()
	if d := got.Devices[0]; !d.PowerThrottle || d.TemperatureC != 0 {
		t.Errorf("device %+v", d)
	}
	dev := f.devs[0]
	if len(dev.GetCurrentClocksEventReasonsCalls()) != 0 || len(dev.GetTemperatureCalls()) != 0 {
		t.Error("called a symbol the driver lacks")
	}
	if len(dev.GetCurrentClocksThrottleReasonsCalls()) == 0 {
		t.Error("throttle reasons not read")
	}
}

// gatedEngine is a batching engine whose Decode waits for the gate, so
// tests can keep slots busy.
type gatedEngine struct{ gate chan struct{} }

func (e *gatedEngine) Decode(*batching.Batch) error  { <-e.gate; return nil }
func (e *gatedEngine) Logits(int) ([]float32, error) { return []float32{1, 0}, nil }
func (e *gatedEngine) ClearSeq(int32) error          { return nil }
func (e *gatedEngine) Piece(int32) string            { return "a" }
func (e *gatedEngine) IsEOG(int32) bool              { return false }
func (e *gatedEngine) Size() int                     { return 2 }
func (e *gatedEngine) release()                      { close(e.gate) }
func newGatedEngine() *gatedEngine                   { return &gatedEngine{gate: make(chan struct{})} }
func req(prompt, maxTokens int) batching.Request {
	return batching.Request{Prompt: make([]int32, prompt), MaxTokens: maxTokens}
}
func submit(s *batching.Scheduler, r batching.Request) (*batching.Handle, error) {
	return s.Submit(context.Background(), r)
}

// scheduler wires a sampler into a scheduler of one slot and a queue of 4
// over a gated engine; the returned release lets every step run.
func scheduler(t *testing.T, gpu admission.GPUSignals, clock func() time.Time) (*batching.Scheduler, func()) {
	t.Helper()
	e := newGatedEngine()
	s, err := batching.New(e, e, batching.Config{Slots: 1, QueueSize: 4, StepTokens: 64, CtxPerSlot: 4096, GPU: gpu, Clock: clock}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(e.release) }
	t.Cleanup(func() {
		release()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s, release
}

func wantOverload(t *testing.T, err error, reason string) {
	t.Helper()
	var oe *admission.OverloadError
	if !errors.As(err, &oe) || oe.Reason != reason {
		t.Fatalf("got %v, want an overload error for %s", err, reason)
	}
	if oe.RetryAfter < time.Second {
		t.Fatalf("Retry-After %s", oe.RetryAfter)
	}
}

func waitRunning(t *testing.T, s *batching.Scheduler) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Running != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("not running: %+v", s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// Memory near full on one GPU: a new long request is refused, short ones
// are still admitted (and queued), and a long one gets in again once the
// memory is back under the high-water mark.
func TestMemoryNearFullShedsLongRequests(t *testing.T) {
	t.Parallel()
	f := newFakeNVML(healthy(), healthy())
	gpu := start(t, f)
	s, release := scheduler(t, gpu, f.now)
	f.set(1, func(g *gpuState) { g.used = 78 * gib }) // 97.5%
	if err := gpu.Refresh(); err != nil {
		t.Fatal(err)
	}
	_, err := submit(s, req(1500, 500))
	wantOverload(t, err, admission.ReasonGPUMemory)
	short, err := submit(s, req(500, 100))
	if err != nil {
		t.Fatalf("short request: %v", err)
	}
	waitRunning(t, s)
	queued, err := submit(s, req(200, 100))
	if err != nil {
		t.Fatalf("short request behind a busy slot: %v", err)
	}
	f.set(1, func(g *gpuState) { g.used = 40 * gib })
	if err := gpu.Refresh(); err != nil {
		t.Fatal(err)
	}
	long, err := submit(s, req(1500, 500))
	if err != nil {
		t.Fatalf("long request after memory freed: %v", err)
	}
	release()
	for _, h := range []*batching.Handle{short, queued, long} {
		if c, err := h.Wait(context.Background()); err != nil || c.Finish != batching.FinishLength {
			t.Fatalf("%+v %v", c, err)
		}
	}
}

// A throttled GPU refuses what would wait, with Retry-After; a software
// power cap alone does not.
func TestThrottlingRejectsWithRetryAfter(t *testing.T) {
	t.Parallel()
	f := newFakeNVML(healthy())
	gpu := start(t, f)
	s, release := scheduler(t, gpu, f.now)
	defer release()
	if _, err := submit(s, req(10, 10)); err != nil {
		t.Fatal(err)
	}
	waitRunning(t, s)
	f.set(0, func(g *gpuState) { g.reasons = gonvml.ClocksThrottleReasonHwThermalSlowdown })
	_ = gpu.Refresh()
	_, err := submit(s, req(10, 10))
	wantOverload(t, err, admission.ReasonGPUThrottled)

	f.set(0, func(g *gpuState) { g.reasons = gonvml.ClocksEventReasonSwPowerCap })
	_ = gpu.Refresh()
	if _, err := submit(s, req(10, 10)); err != nil {
		t.Fatalf("software power cap: %v", err)
	}
}

// Without NVML (no driver) starting succeeds, telemetry reports itself
// unavailable, and admission falls back to the scheduler's own signals.
func TestUnavailableFallsBackToRuntimeSignals(t *testing.T) {
	t.Parallel()
	f := newFakeNVML(healthy())
	f.initRet = gonvml.ERROR_LIBRARY_NOT_FOUND
	gpu := start(t, f)
	if _, ok := gpu.Snapshot(); ok || gpu.Available() {
		t.Fatal("available without a driver")
	}
	if err := gpu.Refresh(); err == nil {
		t.Fatal("refresh without a driver succeeded")
	}
	if len(f.lib.DeviceGetCountCalls()) != 0 {
		t.Error("used NVML after a failed init")
	}
	s, release := scheduler(t, gpu, f.now)
	defer release()
	for i := range 5 { // one running, four waiting
		if _, err := submit(s, req(1500, 500)); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if i == 0 {
			waitRunning(t, s)
		}
	}
	_, err := submit(s, req(10, 10))
	wantOverload(t, err, admission.ReasonQueueFull)
}

// A driver that loads but has no GPU is unavailable too, and NVML is shut
// down again.
func TestNoDevicesIsUnavailable(t *testing.T) {
	t.Parallel()
	f := newFakeNVML()
	gpu := start(t, f)
	if gpu.Available() {
		t.Fatal("available without devices")
	}
	if len(f.lib.ShutdownCalls()) != 1 {
		t.Errorf("%d shutdowns", len(f.lib.ShutdownCalls()))
	}
}

// A GPU that stops answering leaves the last sample to go stale, which
// counts as saturated; a fresh sample clears it.
func TestStaleSamplesCountAsSaturated(t *testing.T) {
	t.Parallel()
	f := newFakeNVML(healthy())
	gpu := start(t, f)
	s, release := scheduler(t, gpu, f.now)
	defer release()
	if _, err := submit(s, req(10, 10)); err != nil {
		t.Fatal(err)
	}
	waitRunning(t, s)
	f.set(0, func(g *gpuState) { g.memErr = gonvml.ERROR_GPU_IS_LOST })
	f.advance(admission.DefaultStaleAfter + time.Second)
	if err := gpu.Refresh(); err == nil {
		t.Fatal("refresh over a lost GPU succeeded")
	}
	if got, ok := gpu.Snapshot(); !ok || !got.At.Equal(t0) {
		t.Fatalf("snapshot %+v %v, want the t0 sample", got, ok)
	}
	_, err := submit(s, req(10, 10))
	wantOverload(t, err, admission.ReasonGPUStale)

	f.set(0, func(g *gpuState) { g.memErr = gonvml.SUCCESS })
	if err := gpu.Refresh(); err != nil {
		t.Fatal(err)
	}
	if _, err := submit(s, req(10, 10)); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// The ticker samples on its own and Close stops it (goleak checks).
func TestTickerSamples(t *testing.T) {
	t.Parallel()
	f := newFakeNVML(healthy())
	s := nvml.New(nvml.Config{Library: f.lib, Interval: time.Millisecond, Logger: zaptest.NewLogger(t)})
	s.Start()
	deadline := time.Now().Add(5 * time.Second)
	for len(f.devs[0].GetMemoryInfoCalls()) < 5 {
		if time.Now().After(deadline) {
			t.Fatal("the ticker does not sample")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, ok := s.Snapshot(); ok {
		t.Error("available after Close")
	}
	if len(f.lib.ShutdownCalls()) != 1 {
		t.Errorf("%d shutdowns, want 1", len(f.lib.ShutdownCalls()))
	}
}

// The system's NVML: on a machine without a driver (CI) Start must not fail
// or panic; on a GPU machine the sample must be sane.
func TestSystemNVML(t *testing.T) {
	t.Parallel()
	s := nvml.New(nvml.Config{Logger: zaptest.NewLogger(t)})
	s.Start()
	defer func() { _ = s.Close(context.Background()) }()
	got, ok := s.Snapshot()
	if !ok {
		t.Log("no NVML here: telemetry unavailable, as expected without a driver")
		return
	}
	for _, d := range got.Devices {
		t.Logf("gpu %d %s: %d/%d MiB, %.0f%% busy, %.0f C, %.0f W, reasons %#x",
			d.Index, d.Name, d.MemoryUsed>>20, d.MemoryTotal>>20, d.Utilization*100, d.TemperatureC, d.PowerW, d.ClockEventReasons)
		if d.MemoryTotal == 0 || d.MemoryUsed > d.MemoryTotal || d.UUID == "" {
			t.Errorf("implausible device %+v", d)
		}
	}
	if len(got.Devices) == 0 {
		t.Error("available with no devices")
	}
}
