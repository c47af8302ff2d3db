package admission

import "time"

// GPUDevice is one GPU as the telemetry last saw it.
type GPUDevice struct {
	Index       int
	UUID        string
	Name        string
	MemoryUsed  uint64 // bytes
	MemoryTotal uint64 // bytes
	// Utilization is the fraction of the last sample period the GPU was
	// busy, 0 to 1.
	Utilization  float64
	TemperatureC float64
	PowerW       float64
	// ClockEventReasons is NVML's bitmask of why clocks are held down.
	ClockEventReasons uint64
	// ThermalThrottle and PowerThrottle classify ClockEventReasons: thermal
	// slowdowns, and hardware slowdowns or power brakes. A software power
	// cap, the normal state of a GPU at full load, is neither.
	ThermalThrottle bool
	PowerThrottle   bool
}

// MemoryFraction is the fraction of the device's memory in use.
func (d GPUDevice) MemoryFraction() float64 {
	if d.MemoryTotal == 0 {
		return 0
	}
	return float64(d.MemoryUsed) / float64(d.MemoryTotal)
}

// GPUSample is every GPU at one moment.
type GPUSample struct {
	// At is when the sample was taken.
	At      time.Time
	Devices []GPUDevice
}

// MemoryFraction is the highest fraction of memory in use over the devices.
func (g GPUSample) MemoryFraction() float64 {
	f := 0.0
	for _, d := range g.Devices {
		f = max(f, d.MemoryFraction())
	}
	return f
}

// Throttled reports whether any device is thermally or power throttled.
func (g GPUSample) Throttled() bool {
	for _, d := range g.Devices {
		if d.ThermalThrottle || d.PowerThrottle {
			return true
		}
	}
	return false
}

// GPUSignals gives the latest GPU sample. ok is false when telemetry is
// unavailable (no driver, no GPU): admission then uses the scheduler's own
// signals alone. MUST be goroutine-safe and cheap: it is called on every
// Submit and every metrics scrape, so it returns a cached sample.
type GPUSignals interface {
	Snapshot() (s GPUSample, ok bool)
}
