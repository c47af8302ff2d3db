package eval

import (
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"
)

// progress counts a run's cases as they finish. Its methods are safe for
// concurrent use; a nil *progress ignores them.
type progress struct {
	label                              string
	total                              int
	start                              time.Time
	done, resumed, correct, failed, ns atomic.Int64
}

func newProgress(label string, total int, start time.Time) *progress {
	return &progress{label: label, total: total, start: start}
}

// add counts a case's result (resumed ones included).
func (p *progress) add(r Result, c *Case) {
	if p == nil {
		return
	}
	p.done.Add(1)
	switch {
	case r.Status == StatusFailed:
		p.failed.Add(1)
	case r.Status == StatusNotSent:
		p.ns.Add(1)
	case r.Action != nil && *r.Action == c.Truth:
		p.correct.Add(1)
	}
}

// barWidth is the width of the bar on a terminal.
const barWidth = 24

// line is the status at now: a bar, counts, rate, time left.
func (p *progress) line(now time.Time) string {
	done, total := p.done.Load(), int64(p.total)
	el := now.Sub(p.start).Seconds()
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	fill := int(frac * barWidth)
	rate, eta := 0.0, "-"
	if el > 0 {
		rate = float64(done) / el
	}
	if rate > 0 && done < total {
		eta = (time.Duration(float64(total-done)/rate) * time.Second).Round(time.Second).String()
	}
	acc := "-"
	if done > 0 {
		acc = fmt.Sprintf("%.1f%%", 100*float64(p.correct.Load())/float64(done))
	}
	return fmt.Sprintf("[%s] [%s%s] %d/%d cases %3.0f%%  %.1f cases/s  left %s  exact %s  failed %d  not sent %d",
		p.label, strings.Repeat("#", fill), strings.Repeat(".", barWidth-fill), done, total, 100*frac, rate, eta, acc,
		p.failed.Load(), p.ns.Load())
}

// startProgress prints p every interval until the returned function is
// called: on a terminal one line rewritten in place, otherwise plain
// lines (every 10 s).
func startProgress(w io.Writer, terminal bool, now func() time.Time, p *progress) (stop func()) {
	if w == nil {
		return func() {}
	}
	every := 10 * time.Second
	if terminal {
		every = 200 * time.Millisecond
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	print := func(last bool) {
		switch {
		case terminal && last:
			fmt.Fprintf(w, "\r\033[K%s\n", p.line(now()))
		case terminal:
			fmt.Fprintf(w, "\r\033[K%s", p.line(now()))
		default:
			fmt.Fprintln(w, p.line(now()))
		}
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				print(false)
			case <-quit:
				print(true)
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}
