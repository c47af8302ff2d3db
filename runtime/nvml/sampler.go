// Package nvml samples NVIDIA GPU telemetry through NVML
// (github.com/NVIDIA/go-nvml) on a ticker, never per request: per device
// memory used and total, utilization, temperature, power and clock-event
// (throttle) reasons. A Sampler implements admission.GPUSignals for
// admission and feeds the GPU gauges of /metrics from the same cached
// sample.
//
// go-nvml loads libnvidia-ml.so.1 with dlopen when Start initializes it.
// Without a driver or a GPU, Start logs once and the sampler reports itself
// unavailable (Snapshot's ok is false); starting never fails because of
// telemetry.
//
// Invariants: Snapshot never calls NVML; a sample is all devices or none, so
// a device that stops answering leaves the last good sample to go stale,
// which admission counts as saturated.
package nvml

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.uber.org/zap"

	"github.com/nextact/nextact/batching/admission"
)

// Library is the part of NVML the sampler calls. gonvml.New() and go-nvml's
// mock.Interface satisfy it. Devices must answer GetUUID, GetName,
// GetMemoryInfo, GetUtilizationRates, GetTemperature, GetPowerUsage and
// GetCurrentClocksEventReasons (GetCurrentClocksThrottleReasons on drivers
// older than R535); Extensions().LookupSymbol tells which symbols exist.
type Library interface {
	Init() gonvml.Return
	Shutdown() gonvml.Return
	DeviceGetCount() (int, gonvml.Return)
	DeviceGetHandleByIndex(int) (gonvml.Device, gonvml.Return)
	Extensions() gonvml.ExtendedInterface
}

// DefaultInterval is how often a Sampler samples when Config.Interval is 0.
const DefaultInterval = time.Second

// Config configures a Sampler. Zero fields take defaults.
type Config struct {
	// Interval between samples; DefaultInterval when 0.
	Interval time.Duration
	// Library is NVML; nil uses the system's libnvidia-ml through go-nvml.
	Library Library
	// Clock stamps samples; time.Now when nil.
	Clock  func() time.Time
	Logger *zap.Logger
}

// Clock-event reasons that count as throttling. A software power cap (0x4)
// is the normal state of a GPU at full load and does not count.
const (
	thermalReasons = gonvml.ClocksEventReasonSwThermalSlowdown | gonvml.ClocksThrottleReasonHwThermalSlowdown
	powerReasons   = gonvml.ClocksThrottleReasonHwSlowdown | gonvml.ClocksThrottleReasonHwPowerBrakeSlowdown
)

// Symbols looked up before use: calling one the driver lacks would crash
// the process. nvmlDeviceGetCurrentClocksEventReasons replaced
// nvmlDeviceGetCurrentClocksThrottleReasons in R535; nvmlDeviceGetTemperature
// is deprecated since CUDA 13 and may go.
const (
	eventReasonsSymbol = "nvmlDeviceGetCurrentClocksEventReasons"
	temperatureSymbol  = "nvmlDeviceGetTemperature"
)

// Sampler samples every GPU on a ticker and serves the latest sample. Its
// methods are goroutine-safe.
type Sampler struct {
	cfg Config
	lib Library
	log *zap.Logger

	// available is set by Start when NVML answered, cleared by Close.
	available atomic.Bool
	// Set by Start; read-only after.
	devices      []device
	eventReasons bool
	temperature  bool

	mu     sync.RWMutex
	last   admission.GPUSample
	failed bool // the last attempt failed; for logging transitions

	stop      chan struct{}
	done      chan struct{}
	startOnce sync.Once
	closeOnce sync.Once
}

type device struct {
	index      int
	uuid, name string
	h          gonvml.Device
}

// New returns a sampler; nothing is loaded until Start.
func New(cfg Config) *Sampler {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	lib := cfg.Library
	if lib == nil {
		lib = gonvml.New()
	}
	return &Sampler{cfg: cfg, lib: lib, log: cfg.Logger.Named("nvml"), stop: make(chan struct{}), done: make(chan struct{})}
}

// Start initializes NVML, takes a first sample and samples every Interval
// until Close. Without NVML or without GPUs it logs why and the sampler
// stays unavailable. It never fails; calls after the first do nothing.
func (s *Sampler) Start() {
	s.startOnce.Do(func() {
		if err := s.open(); err != nil {
			s.log.Info("GPU telemetry unavailable; admission uses the scheduler's own signals", zap.Error(err))
			close(s.done)
			return
		}
		s.log.Info("GPU telemetry", zap.Int("devices", len(s.devices)), zap.Duration("interval", s.cfg.Interval))
		_ = s.Refresh()
		go s.run()
	})
}

// open initializes NVML and enumerates the devices.
func (s *Sampler) open() (err error) {
	defer func() { // NVML is C behind dlopen: never let it take the server down
		if r := recover(); r != nil {
			err = fmt.Errorf("nvml: panic: %v", r)
		}
	}()
	if ret := s.lib.Init(); ret != gonvml.SUCCESS {
		return fmt.Errorf("nvml init: %w", ret)
	}
	n, ret := s.lib.DeviceGetCount()
	if ret == gonvml.SUCCESS && n == 0 {
		ret = gonvml.ERROR_NOT_FOUND
	}
	if ret != gonvml.SUCCESS {
		s.lib.Shutdown()
		return fmt.Errorf("nvml device count: %w", ret)
	}
	devs := make([]device, 0, n)
	for i := range n {
		h, ret := s.lib.DeviceGetHandleByIndex(i)
		if ret != gonvml.SUCCESS {
			s.lib.Shutdown()
			return fmt.Errorf("nvml device %d: %w", i, ret)
		}
		d := device{index: i, h: h}
		d.uuid, _ = h.GetUUID()
		d.name, _ = h.GetName()
		devs = append(devs, d)
	}
	s.devices = devs
	ext := s.lib.Extensions()
	s.eventReasons = ext.LookupSymbol(eventReasonsSymbol) == nil
	s.temperature = ext.LookupSymbol(temperatureSymbol) == nil
	s.available.Store(true)
	return nil
}

func (s *Sampler) run() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_ = s.Refresh()
		}
	}
}

// Refresh samples every device now; on failure the previous sample stays
// (and goes stale). The ticker calls it; tests may too.
func (s *Sampler) Refresh() error {
	if !s.available.Load() {
		return errors.New("nvml: unavailable")
	}
	sample, err := s.sample()
	s.mu.Lock()
	wasFailed := s.failed
	s.failed = err != nil
	if err == nil {
		s.last = sample
	}
	s.mu.Unlock()
	switch {
	case err != nil && !wasFailed:
		s.log.Warn("GPU sample failed; the last sample will go stale", zap.Error(err))
	case err == nil && wasFailed:
		s.log.Info("GPU sampling recovered")
	}
	return err
}

func (s *Sampler) sample() (out admission.GPUSample, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("nvml: panic: %v", r)
		}
	}()
	devs := make([]admission.GPUDevice, len(s.devices))
	for i, d := range s.devices {
		if devs[i], err = s.sampleDevice(d); err != nil {
			return out, fmt.Errorf("gpu %d: %w", d.index, err)
		}
	}
	return admission.GPUSample{At: s.cfg.Clock(), Devices: devs}, nil
}

// sampleDevice reads one device. Memory must answer; other fields a board
// does not support stay zero.
func (s *Sampler) sampleDevice(d device) (admission.GPUDevice, error) {
	out := admission.GPUDevice{Index: d.index, UUID: d.uuid, Name: d.name}
	mem, ret := d.h.GetMemoryInfo()
	if ret != gonvml.SUCCESS {
		return out, fmt.Errorf("memory: %w", ret)
	}
	out.MemoryUsed, out.MemoryTotal = mem.Used, mem.Total
	if u, ret := d.h.GetUtilizationRates(); optional(ret) {
		out.Utilization = float64(u.Gpu) / 100
	} else {
		return out, fmt.Errorf("utilization: %w", ret)
	}
	if s.temperature {
		c, ret := d.h.GetTemperature(gonvml.TEMPERATURE_GPU)
		if !optional(ret) {
			return out, fmt.Errorf("temperature: %w", ret)
		}
		out.TemperatureC = float64(c)
	}
	if mw, ret := d.h.GetPowerUsage(); optional(ret) {
		out.PowerW = float64(mw) / 1000
	} else {
		return out, fmt.Errorf("power: %w", ret)
	}
	var reasons uint64
	if s.eventReasons {
		reasons, ret = d.h.GetCurrentClocksEventReasons()
	} else {
		reasons, ret = d.h.GetCurrentClocksThrottleReasons()
	}
	if !optional(ret) {
		return out, fmt.Errorf("clock event reasons: %w", ret)
	}
	out.ClockEventReasons = reasons
	out.ThermalThrottle = reasons&thermalReasons != 0
	out.PowerThrottle = reasons&powerReasons != 0
	return out, nil
}

// optional accepts success, and a field the board does not support (its
// value stays zero).
func optional(ret gonvml.Return) bool {
	return ret == gonvml.SUCCESS || ret == gonvml.ERROR_NOT_SUPPORTED
}

// Snapshot returns the latest sample without calling NVML. ok is false when
// telemetry is unavailable; a sample that could not be refreshed keeps its
// old At and goes stale.
func (s *Sampler) Snapshot() (admission.GPUSample, bool) {
	if !s.available.Load() {
		return admission.GPUSample{}, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.last, true
}

// Available reports whether NVML answered at Start.
func (s *Sampler) Available() bool { return s.available.Load() }

// Close stops sampling and shuts NVML down. It waits for the sampling
// goroutine until ctx ends. Idempotent.
func (s *Sampler) Close(ctx context.Context) error {
	s.startOnce.Do(func() { close(s.done) }) // never started
	s.closeOnce.Do(func() { close(s.stop) })
	select {
	case <-s.done:
	case <-ctx.Done():
		return fmt.Errorf("nvml close: %w", ctx.Err())
	}
	if s.available.CompareAndSwap(true, false) {
		if ret := s.lib.Shutdown(); ret != gonvml.SUCCESS {
			return fmt.Errorf("nvml shutdown: %w", ret)
		}
	}
	return nil
}

var _ admission.GPUSignals = (*Sampler)(nil)
