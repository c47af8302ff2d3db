package batching

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the plans in testdata/plan/*.txt with the planner's output")

// The planner is tested by golden transcripts, as etcd's raft tests its
// core: each file in testdata/plan holds cases of a view (the state the
// loop would see) and the plan the planner makes of it. A case reads:
//
//	# what the case shows
//	plan budget=8 ctx=64 rr=0 [reuse] [prepare]
//	slot running tokens=20 fed=0 [cancelled]
//	slot idle resident=30 used=3
//	slot empty
//	slot dirty
//	wait prompt=10 [forced=2] [complete] [match=2:14,3:9]
//	----
//	the plan, one line per item (written by formatPlan)
//
// and ends at a blank line. "reuse" turns the prefix cache on (match
// lists, per waiting request, the slots whose KV holds a prefix of its
// prompt and how long; the rest hold none), "prepare" plans the work done
// while the engine computes. go test -run TestPlanGolden -update rewrites
// every plan from the planner's output; review the diff.
func TestPlanGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "plan", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out, err := runTranscript(t, string(data))
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if out != string(data) {
				t.Errorf("%s: the planner's output differs (run with -update and review the diff):\n%s", f, diffLines(string(data), out))
			}
		})
	}
}

// runTranscript plans every case of a transcript and returns the
// transcript with the plans it made in place of the ones written.
func runTranscript(t *testing.T, text string) (string, error) {
	var out strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	var input []string
	inCase, inPlan := false, false
	line := 0
	flush := func() error {
		if !inCase {
			return nil
		}
		v, err := parseView(input)
		if err != nil {
			return fmt.Errorf("case ending at line %d: %w", line, err)
		}
		var p stepPlan
		plan(v, &p)
		checkPlan(t, v, &p)
		out.WriteString("----\n")
		out.WriteString(formatPlan(&p))
		inCase, inPlan, input = false, false, nil
		return nil
	}
	for sc.Scan() {
		line++
		l := sc.Text()
		switch {
		case inPlan && strings.TrimSpace(l) != "":
			continue // the old plan, replaced by flush
		case inPlan:
			if err := flush(); err != nil {
				return "", err
			}
			out.WriteString("\n")
		case inCase && l == "----":
			inPlan = true
		case inCase:
			input = append(input, l)
			out.WriteString(l + "\n")
		case strings.HasPrefix(l, "plan "):
			inCase, input = true, []string{l}
			out.WriteString(l + "\n")
		default:
			out.WriteString(l + "\n")
		}
	}
	if inCase && !inPlan {
		return "", fmt.Errorf("case without ---- at the end")
	}
	if err := flush(); err != nil {
		return "", err
	}
	return out.String(), sc.Err()
}

// parseView reads a case's input lines.
func parseView(lines []string) (*view, error) {
	v := &view{}
	reuse := false
	for i, l := range lines {
		f := strings.Fields(l)
		args, flags, err := parseArgs(f[1:])
		if err != nil {
			return nil, fmt.Errorf("%q: %w", l, err)
		}
		num := func(k string) int { return args[k] }
		switch {
		case i == 0 && f[0] == "plan":
			v.budget, v.ctx, v.rr = num("budget"), num("ctx"), num("rr")
			reuse = flags["reuse"]
			if flags["prepare"] {
				v.phase = phasePrepare
			}
		case f[0] == "slot" && len(f) > 1:
			sv := slotView{}
			switch f[1] {
			case "running":
				sv = slotView{running: true, tokens: num("tokens"), fed: num("fed"), cancelled: flags["cancelled"]}
			case "idle":
				sv = slotView{resident: num("resident"), lastUse: uint64(num("used"))}
			case "dirty":
				sv.dirty = true
			case "empty":
			default:
				return nil, fmt.Errorf("%q: unknown slot state", l)
			}
			v.slots = append(v.slots, sv)
		case f[0] == "wait":
			v.queue = append(v.queue, waitingView{prompt: num("prompt"), forced: num("forced"), complete: flags["complete"]})
		default:
			return nil, fmt.Errorf("%q: unknown line", l)
		}
	}
	if v.budget == 0 || v.ctx == 0 || len(v.slots) == 0 {
		return nil, fmt.Errorf("a case needs budget, ctx and slots")
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, "wait") {
			continue
		}
		k := countPrefix(lines[:i], "wait")
		if !reuse {
			continue
		}
		m := make([]int, len(v.slots))
		for _, f := range strings.Fields(l) {
			if spec, ok := strings.CutPrefix(f, "match="); ok {
				for _, e := range strings.Split(spec, ",") {
					s, n, ok := strings.Cut(e, ":")
					si, err1 := strconv.Atoi(s)
					ni, err2 := strconv.Atoi(n)
					if !ok || err1 != nil || err2 != nil || si < 0 || si >= len(m) {
						return nil, fmt.Errorf("%q: bad match %q", l, e)
					}
					m[si] = ni
				}
			}
		}
		v.queue[k].matches = m
	}
	return v, nil
}

func countPrefix(lines []string, p string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, p) {
			n++
		}
	}
	return n
}

// parseArgs splits key=number arguments from bare flags (match= is read
// by the caller).
func parseArgs(fields []string) (map[string]int, map[string]bool, error) {
	args, flags := map[string]int{}, map[string]bool{}
	for _, f := range fields {
		k, val, ok := strings.Cut(f, "=")
		switch {
		case !ok:
			flags[f] = true
		case k == "match":
		default:
			n, err := strconv.Atoi(val)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", f, err)
			}
			args[k] = n
		}
	}
	return args, flags, nil
}

// formatPlan writes a plan one item a line.
func formatPlan(p *stepPlan) string {
	if p.idle() {
		return "idle\n"
	}
	var b strings.Builder
	for _, e := range p.end {
		fmt.Fprintf(&b, "end slot=%d %s\n", e.slot, e.reason)
	}
	for _, d := range p.leave {
		fmt.Fprintf(&b, "leave wait=%d %s\n", d.queue, d.reason)
	}
	for _, s := range p.seat {
		fmt.Fprintf(&b, "seat wait=%d slot=%d kv=%s\n", s.queue, s.slot, kvName(s.kv))
	}
	for _, f := range p.feeds {
		l := ""
		if f.logits {
			l = " logits"
		}
		fmt.Fprintf(&b, "feed slot=%d pos=%d..%d%s\n", f.slot, f.from, f.from+f.n, l)
	}
	if len(p.end) == 0 && p.phase == phaseStep {
		fmt.Fprintf(&b, "sample %v\nrr %d\nprepare %v\n", p.sample, p.rr, p.prepare)
	}
	return b.String()
}

func kvName(kv kvPlan) string {
	switch {
	case kv.copyFrom >= 0:
		return fmt.Sprintf("copy(%d)+trim(%d)", kv.copyFrom, kv.keep)
	case kv.keep > 0:
		return fmt.Sprintf("trim(%d)", kv.keep)
	case kv.clear:
		return "clear"
	}
	return "as-is"
}

// checkPlan asserts what every plan must satisfy, whatever its golden
// text says: the batch within the budget, every decoding sequence in it
// (the budget is at least the number of slots), each sequence's feeds at its
// next position and within what it knows, logits only on the last token
// of a tail, sampled slots exactly those, no slot seated twice or while
// running, and at least one prompt token left to feed after reuse.
func checkPlan(t *testing.T, v *view, p *stepPlan) {
	t.Helper()
	total := 0
	fed := map[int32]int{}
	for _, f := range p.feeds {
		total += f.n
		if _, dup := fed[f.slot]; dup {
			t.Errorf("slot %d fed twice", f.slot)
		}
		fed[f.slot] = f.n
		if f.from != p.fed[f.slot] || f.from+f.n > p.tokens[f.slot] || f.n < 1 {
			t.Errorf("feed %+v outside slot %d's tail [%d, %d)", f, f.slot, p.fed[f.slot], p.tokens[f.slot])
		}
		if f.logits != (f.from+f.n == p.tokens[f.slot]) {
			t.Errorf("feed %+v: logits must be asked exactly at the end of the tail (%d)", f, p.tokens[f.slot])
		}
	}
	if total > v.budget {
		t.Errorf("batch of %d tokens over the budget %d", total, v.budget)
	}
	if len(p.end) == 0 && p.phase == phaseStep {
		for i := range v.slots {
			if _, ok := fed[int32(i)]; p.busy[i] && p.tokens[i]-p.fed[i] == 1 && !ok {
				t.Errorf("decoding slot %d left out of the batch", i)
			}
		}
	}
	for _, i := range p.sample {
		if n, ok := fed[i]; !ok || !p.feeds[indexFeed(p, i)].logits || n < 1 {
			t.Errorf("slot %d sampled without logits", i)
		}
	}
	seated := map[int32]bool{}
	for _, s := range p.seat {
		if seated[s.slot] || v.slots[s.slot].running {
			t.Errorf("slot %d seated twice or while running", s.slot)
		}
		seated[s.slot] = true
		if w := v.queue[s.queue]; s.kv.keep > w.prompt-1 {
			t.Errorf("seat %+v keeps the whole prompt of %d", s, w.prompt)
		}
	}
}

func indexFeed(p *stepPlan, slot int32) int {
	for i, f := range p.feeds {
		if f.slot == slot {
			return i
		}
	}
	return -1
}

// diffLines shows the lines where two texts first differ.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  written: %s\n  planned: %s\n", i+1, wl, gl)
			shown++
		}
	}
	return b.String()
}

// Random views (seeded) keep checkPlan's invariants, and a plan seats
// every waiting request that needs a slot when the view holds no more of
// them than there are free slots, as the loop builds views.
func TestPlanInvariants(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(12, 2))
	var p stepPlan
	for trial := range 20000 {
		n := 1 + r.IntN(8)
		v := &view{budget: n + r.IntN(40), ctx: 8 + r.IntN(120), rr: r.IntN(n), phase: phase(r.IntN(2))}
		reuse := r.IntN(2) == 0
		free := 0
		for range n {
			var sv slotView
			switch r.IntN(4) {
			case 0:
				tokens := 1 + r.IntN(v.ctx+4)
				sv = slotView{running: true, tokens: tokens, fed: r.IntN(tokens), cancelled: r.IntN(20) == 0}
			case 1:
				sv = slotView{resident: 1 + r.IntN(v.ctx), lastUse: uint64(r.IntN(50))}
				free++
			case 2:
				sv = slotView{dirty: r.IntN(5) == 0}
				free++
			default:
				free++
			}
			v.slots = append(v.slots, sv)
		}
		need := 0
		for range r.IntN(6) {
			w := waitingView{prompt: 1 + r.IntN(v.ctx-1), complete: r.IntN(6) == 0}
			if r.IntN(3) == 0 {
				w.forced = r.IntN(v.ctx)
			}
			if ok, _ := w.slotless(v.ctx); !ok {
				if need == free {
					break
				}
				need++
			}
			if reuse {
				w.matches = make([]int, n)
				for i, sl := range v.slots {
					if (sl.running || sl.resident > 0) && r.IntN(2) == 0 {
						w.matches[i] = r.IntN(w.prompt + 1)
					}
				}
			}
			v.queue = append(v.queue, w)
		}
		plan(v, &p)
		checkPlan(t, v, &p)
		if len(p.end) == 0 && len(p.seat) != need {
			t.Fatalf("trial %d: %d of %d seated: %+v", trial, len(p.seat), need, v)
		}
		if t.Failed() {
			t.Fatalf("trial %d: view %+v", trial, v)
		}
	}
}
