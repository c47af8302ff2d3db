package admission_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/nextact/nextact/batching/admission"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestDecide(t *testing.T) {
	t.Parallel()
	idle := admission.Load{Slots: 4, QueueSize: 8, CapacityTokens: 4 * 1000}
	busy := idle
	busy.Running, busy.Waiting, busy.ReservedTokens = 4, 2, 4*500
	full := busy
	full.Waiting = 8
	fresh := admission.GPUSample{At: t0, Devices: []admission.GPUDevice{{MemoryUsed: 10, MemoryTotal: 100}}}
	memFull := admission.GPUSample{At: t0, Devices: []admission.GPUDevice{{MemoryUsed: 10, MemoryTotal: 100}, {MemoryUsed: 97, MemoryTotal: 100}}}
	hot := admission.GPUSample{At: t0, Devices: []admission.GPUDevice{{MemoryUsed: 10, MemoryTotal: 100, ThermalThrottle: true}}}
	braked := admission.GPUSample{At: t0, Devices: []admission.GPUDevice{{MemoryUsed: 10, MemoryTotal: 100, PowerThrottle: true}}}
	stale := fresh
	stale.At = t0.Add(-time.Minute)
	cases := []struct {
		name  string
		cfg   admission.Config
		need  int
		load  admission.Load
		gpu   admission.GPUSample
		gpuOK bool
		want  admission.Decision
	}{
		{"idle admits", admission.Config{}, 100, idle, fresh, true, dec(admission.OutcomeAdmitted, admission.ReasonSlotFree)},
		{"busy queues", admission.Config{}, 100, busy, fresh, true, dec(admission.OutcomeQueued, admission.ReasonSlotsBusy)},
		{"full queue rejects", admission.Config{}, 100, full, fresh, true, dec(admission.OutcomeRejected, admission.ReasonQueueFull)},
		{"KV reservation over the overcommit", admission.Config{KVOvercommit: 1}, 2001, busy, fresh, true, dec(admission.OutcomeRejected, admission.ReasonKVFull)},
		{"KV reservation at the overcommit", admission.Config{KVOvercommit: 1}, 2000, busy, fresh, true, dec(admission.OutcomeQueued, admission.ReasonSlotsBusy)},
		{"memory full rejects long", admission.Config{}, 2000, idle, memFull, true, dec(admission.OutcomeRejected, admission.ReasonGPUMemory)},
		{"memory full admits short", admission.Config{}, 1024, idle, memFull, true, dec(admission.OutcomeAdmitted, admission.ReasonSlotFree)},
		{"memory full queues short", admission.Config{}, 100, busy, memFull, true, dec(admission.OutcomeQueued, admission.ReasonSlotsBusy)},
		{"memory below a raised mark", admission.Config{GPUMemoryHighWater: 0.99}, 2000, idle, memFull, true, dec(admission.OutcomeAdmitted, admission.ReasonSlotFree)},
		{"thermal throttle rejects waiting", admission.Config{}, 100, busy, hot, true, dec(admission.OutcomeRejected, admission.ReasonGPUThrottled)},
		{"power brake rejects waiting", admission.Config{}, 100, busy, braked, true, dec(admission.OutcomeRejected, admission.ReasonGPUThrottled)},
		{"throttle still fills a free slot", admission.Config{}, 100, idle, hot, true, dec(admission.OutcomeAdmitted, admission.ReasonSlotFree)},
		{"throttle ignored", admission.Config{IgnoreThrottle: true}, 100, busy, hot, true, dec(admission.OutcomeQueued, admission.ReasonSlotsBusy)},
		{"stale counts as saturated", admission.Config{}, 100, busy, stale, true, dec(admission.OutcomeRejected, admission.ReasonGPUStale)},
		{"stale within a longer limit", admission.Config{StaleAfter: 2 * time.Minute}, 100, busy, stale, true, dec(admission.OutcomeQueued, admission.ReasonSlotsBusy)},
		{"no telemetry: runtime signals only", admission.Config{}, 2000, busy, admission.GPUSample{Devices: memFull.Devices}, false, dec(admission.OutcomeQueued, admission.ReasonSlotsBusy)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.cfg.Decide(tc.need, tc.load, tc.gpu, tc.gpuOK, t0); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func dec(o admission.Outcome, reason string) admission.Decision {
	return admission.Decision{Outcome: o, Reason: reason}
}

func TestParsePriority(t *testing.T) {
	t.Parallel()
	for _, p := range []admission.Priority{admission.PriorityLow, admission.PriorityNormal, admission.PriorityHigh} {
		got, err := admission.ParsePriority(p.String())
		if err != nil || got != p {
			t.Errorf("%v: got %v, %v", p, got, err)
		}
	}
	if _, err := admission.ParsePriority("urgent"); err == nil {
		t.Error("urgent parsed")
	}
}

// A need near the integer maximum is refused as kv_full, never wrapped
// into a small reservation.
func TestDecideHugeNeed(t *testing.T) {
	t.Parallel()
	var c admission.Config
	ld := admission.Load{Slots: 1, QueueSize: 1, ReservedTokens: 10, CapacityTokens: 64}
	for _, need := range []int{math.MaxInt, math.MaxInt - 3, math.MaxInt64 / 2} {
		if d := c.Decide(need, ld, admission.GPUSample{}, false, t0); d.Reason != admission.ReasonKVFull {
			t.Errorf("Decide(%d) = %+v, want kv_full", need, d)
		}
	}
}

// Retry-After: the waiting requests ahead (and this one) at the drain
// rate; kv_full: the excess tokens at the token rate; one second while
// nothing is known yet, a window per request after a stall; whole seconds
// in [1s, MaxRetryAfter].
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	w := admission.DrainWindow
	cases := []struct {
		name   string
		cfg    admission.Config
		reason string
		ahead  int
		excess float64
		drain  admission.Drain
		want   time.Duration
	}{
		{"cold start", admission.Config{}, admission.ReasonQueueFull, 3, 0, admission.Drain{Observed: time.Second}, time.Second},
		{"drain rate", admission.Config{}, admission.ReasonQueueFull, 3, 0, admission.Drain{Requests: 10.0 / 9, Observed: 9 * time.Second}, 4 * time.Second},
		{"stall", admission.Config{}, admission.ReasonQueueFull, 3, 0, admission.Drain{Observed: w}, 40 * time.Second},
		{"capped", admission.Config{MaxRetryAfter: 30 * time.Second}, admission.ReasonQueueFull, 3, 0, admission.Drain{Observed: w}, 30 * time.Second},
		{"fast drain rounds up to 1s", admission.Config{}, admission.ReasonQueueFull, 0, 0, admission.Drain{Requests: 100, Observed: w}, time.Second},
		{"kv_full at the token rate", admission.Config{}, admission.ReasonKVFull, 3, 250, admission.Drain{Requests: 1, Tokens: 100, Observed: w}, 3 * time.Second},
		{"kv_full without a token rate", admission.Config{}, admission.ReasonKVFull, 1, 250, admission.Drain{Requests: 1, Observed: w}, 2 * time.Second},
	}
	for _, tc := range cases {
		if got := tc.cfg.RetryAfter(tc.reason, tc.ahead, tc.excess, tc.drain); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (admission.Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	for _, c := range []admission.Config{
		{KVOvercommit: 0.5}, {GPUMemoryHighWater: 1.5}, {ShortRequestTokens: -1},
		{StaleAfter: -time.Second}, {MaxRetryAfter: -time.Second},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v validated", c)
		}
	}
	d := admission.Config{}.WithDefaults()
	if d.MaxQueueWait != admission.DefaultMaxQueueWait || d.KVOvercommit != admission.DefaultKVOvercommit || d.MaxRetryAfter != admission.DefaultMaxRetryAfter {
		t.Fatalf("defaults %+v", d)
	}
}

// Overload errors match ErrOverloaded.
func TestOverloadError(t *testing.T) {
	t.Parallel()
	var err error = &admission.OverloadError{Reason: admission.ReasonQueueFull, RetryAfter: 2 * time.Second}
	if !errors.Is(err, admission.ErrOverloaded) || err.Error() != "overloaded (queue_full): retry after 2s" {
		t.Fatalf("%v", err)
	}
}
