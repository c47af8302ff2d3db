package bench

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Progress counts a run's sessions and steps as they happen. Its methods
// are safe for concurrent use, and a nil *Progress ignores them.
type Progress struct {
	label    string
	sessions int
	start    time.Time

	started, active                   atomic.Int64
	issued, success, rejected, failed atomic.Int64
	mu                                sync.Mutex
	recent                            []float64 // e2e ms of the latest successful steps, a ring
	next                              int
}

// recentSteps is how many latest successful steps the live p50 is over.
const recentSteps = 256

// NewProgress returns the progress of a run labelled label of n sessions
// that started at start.
func NewProgress(label string, n int, start time.Time) *Progress {
	return &Progress{label: label, sessions: n, start: start}
}

func (p *Progress) sessionStarted() {
	if p != nil {
		p.started.Add(1)
		p.active.Add(1)
	}
}

func (p *Progress) sessionEnded() {
	if p != nil {
		p.active.Add(-1)
	}
}

func (p *Progress) stepDone(r StepRecord) {
	if p == nil {
		return
	}
	p.issued.Add(1)
	switch r.Outcome {
	case OutcomeSuccess:
		p.success.Add(1)
		p.mu.Lock()
		if len(p.recent) < recentSteps {
			p.recent = append(p.recent, ms(r.E2E))
		} else {
			p.recent[p.next] = ms(r.E2E)
			p.next = (p.next + 1) % recentSteps
		}
		p.mu.Unlock()
	case OutcomeRejected:
		p.rejected.Add(1)
	default:
		p.failed.Add(1)
	}
}

// Line is the one-line status at time now.
func (p *Progress) Line(now time.Time) string {
	el := now.Sub(p.start)
	p.mu.Lock()
	recent := slices.Clone(p.recent)
	p.mu.Unlock()
	slices.Sort(recent)
	p50 := "-"
	if len(recent) > 0 {
		p50 = fmt.Sprintf("%.0fms", Percentile(recent, 0.5))
	}
	return fmt.Sprintf("[%s] %6.1fs  sessions %d/%d (%d running)  steps %d: %d ok, %d rejected, %d failed  %.2f steps/s  e2e p50 %s",
		p.label, el.Seconds(), p.started.Load(), p.sessions, p.active.Load(),
		p.issued.Load(), p.success.Load(), p.rejected.Load(), p.failed.Load(),
		rate(float64(p.success.Load()), el), p50)
}

// progressPrinter writes a Progress's line every interval: on a terminal
// it rewrites one line in place, otherwise it prints plain lines.
type progressPrinter struct {
	w        io.Writer
	terminal bool
	every    time.Duration
	now      func() time.Time
	stop     chan struct{}
	done     chan struct{}
}

// startProgress starts printing p until the returned function is called,
// which prints a last line and returns once printing has stopped.
func startProgress(w io.Writer, terminal bool, every time.Duration, now func() time.Time, p *Progress) (stop func()) {
	if w == nil || every <= 0 {
		return func() {}
	}
	pp := &progressPrinter{w: w, terminal: terminal, every: every, now: now, stop: make(chan struct{}), done: make(chan struct{})}
	go pp.loop(p)
	return func() {
		close(pp.stop)
		<-pp.done
	}
}

func (pp *progressPrinter) loop(p *Progress) {
	defer close(pp.done)
	t := time.NewTicker(pp.every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			pp.print(p, false)
		case <-pp.stop:
			pp.print(p, true)
			return
		}
	}
}

func (pp *progressPrinter) print(p *Progress, last bool) {
	line := p.Line(pp.now())
	switch {
	case pp.terminal && last:
		fmt.Fprintf(pp.w, "\r\033[K%s\n", line)
	case pp.terminal:
		fmt.Fprintf(pp.w, "\r\033[K%s", line)
	default:
		fmt.Fprintln(pp.w, line)
	}
}
