package batching

// The step planner: a pure function from a view of the scheduler (its
// slots, the head of its queue, the step's token budget) to a plan of
// what the loop does next. It reads only its view and writes only its
// plan, so it is tested by golden transcripts of views and plans
// (testdata/plan/*.txt, plan_internal_test.go), the way etcd's raft tests
// its core; the loop builds the views and applies the plans (loop.go).

// phase is what a plan is for.
type phase uint8

const (
	// phaseStep plans an engine step: which sequences end, which waiting
	// requests take which slots, the batch and the rows sampled.
	phaseStep phase = iota
	// phasePrepare plans the work done while the engine computes a step
	// (ends and seating only: the batch in flight is the engine's).
	phasePrepare
)

// slotView is one slot as the planner sees it.
type slotView struct {
	// running: the slot holds a sequence that knows tokens tokens (prompt,
	// then generated and forced ones), of which fed are in its KV;
	// cancelled: its request's context has ended.
	running   bool
	tokens    int
	fed       int
	cancelled bool
	// A slot not running keeps resident tokens of KV for prefix reuse,
	// last used at lastUse (a logical clock). dirty: a clear of its KV
	// failed, so what it holds is unknown and it must be cleared before
	// it is used again.
	resident int
	lastUse  uint64
	dirty    bool
}

// waitingView is a request at the head of the queue, in queue order.
type waitingView struct {
	// prompt is its prompt's length, forced the tokens its constraint
	// forces before the first sampled one (known from Submit), complete
	// that the constraint is already complete on them.
	prompt, forced int
	complete       bool
	// matches[i] is how many tokens of the prompt slot i's KV holds (a
	// running slot: of its prompt, fed or not); nil without the prefix
	// cache.
	matches []int
}

// slotless reports whether w ends without a slot: its output is complete
// on its forced tokens (nothing to evaluate), or they overflow a slot's
// context (FinishLength at once).
func (w waitingView) slotless(ctx int) (bool, FinishReason) {
	switch {
	case w.complete:
		return true, FinishStop
	case w.prompt+w.forced > ctx:
		return true, FinishLength
	}
	return false, NotFinished
}

// view is everything the planner reads.
type view struct {
	phase phase
	// budget is the step's token budget (at least the number of slots, so
	// every decoding sequence fits); ctx the positions of a slot.
	budget, ctx int
	// rr is where the round-robin of prompt chunks starts.
	rr    int
	slots []slotView
	// queue is the head of the queue: up to as many requests that need a
	// slot as there are free slots, and the slotless ones among them.
	queue []waitingView
}

// ending is a running sequence that ends before the step.
type ending struct {
	slot   int32
	reason FinishReason
}

// departure is a waiting request (queue index in the view) that ends
// without taking a slot.
type departure struct {
	queue  int
	reason FinishReason
}

// seating is a waiting request (queue index in the view) that takes a free
// slot, and how that slot's KV starts.
type seating struct {
	queue int
	slot  int32
	kv    kvPlan
}

// feed is a run of a sequence's tokens, positions [from, from+n), that
// goes into the batch; logits asks for the last one's logits.
type feed struct {
	slot    int32
	from, n int
	logits  bool
}

// stepPlan is the planner's output, applied by the loop in field order.
type stepPlan struct {
	phase phase
	// end lists running sequences that end first: cancelled, or holding
	// more tokens than their slot's context (so no step carries a
	// position the engine refuses, failing its step-mates with it). A
	// plan that ends sequences does nothing else: the slots they free and
	// the KV they leave change the rest, so the loop applies it and plans
	// again.
	end []ending
	// leave and seat take requests off the head of the queue: some end at
	// once, the others take slots, their KV set up as planned before the
	// step (a copy from another slot, a trim, a clear).
	leave []departure
	seat  []seating
	// feeds is the batch, in order: one token for every decoding sequence
	// (slot order), then chunks of prompts and forced runs round-robin
	// from the view's rr while the budget lasts. A sequence seated by this
	// plan is fed from the KV it starts with.
	feeds []feed
	// sample lists, in slot order, the slots whose logits row is read and
	// sampled after the step.
	sample []int32
	// rr is the next step's round-robin start: one on from the view's
	// when the plan feeds anything.
	rr int
	// prepare asks the loop to admit arrivals while the engine computes
	// this step (setting up their KV behind the compute; they are fed
	// from the next step on). The planner asks when there is a step to
	// overlap and slots stay free after this plan's seating; a full
	// house has nothing to admit.
	prepare bool

	// Scratch, by slot: whether a slot runs after seating (seated marks
	// those seated by this plan), and its tokens and fed positions.
	busy, seated []bool
	tokens, fed  []int
	logits       []bool
}

// idle reports whether the plan does nothing: no sequence runs and none
// waits.
func (p *stepPlan) idle() bool {
	return len(p.end)+len(p.leave)+len(p.seat)+len(p.feeds) == 0
}

// plan fills p from v. Pure: it reads only v and writes only p (whose
// slices it reuses).
func plan(v *view, p *stepPlan) {
	n := len(v.slots)
	p.phase, p.rr, p.prepare = v.phase, v.rr, false
	p.end, p.leave, p.seat, p.feeds, p.sample = p.end[:0], p.leave[:0], p.seat[:0], p.feeds[:0], p.sample[:0]
	p.busy, p.seated = grow(p.busy, n), grow(p.seated, n)
	p.tokens, p.fed, p.logits = grow(p.tokens, n), grow(p.fed, n), grow(p.logits, n)
	for i, sl := range v.slots {
		switch {
		case !sl.running:
		case sl.cancelled:
			p.end = append(p.end, ending{int32(i), FinishCancelled})
		case sl.tokens > v.ctx:
			p.end = append(p.end, ending{int32(i), FinishLength})
		}
		p.busy[i], p.seated[i], p.tokens[i], p.fed[i], p.logits[i] = sl.running, false, sl.tokens, sl.fed, false
	}
	if len(p.end) > 0 {
		return
	}
	planSeating(v, p)
	if v.phase == phasePrepare {
		return
	}
	planFeeds(v, p)
	for i := range n {
		if !p.busy[i] {
			p.prepare = len(p.feeds) > 0
			break
		}
	}
}

// planSeating takes the head of the queue in order: slotless requests
// leave, the others take free slots (the view holds no more of them than
// there are free slots).
func planSeating(v *view, p *stepPlan) {
	for k, w := range v.queue {
		if ok, reason := w.slotless(v.ctx); ok {
			p.leave = append(p.leave, departure{k, reason})
			continue
		}
		i, kv := chooseSlot(v, p, w)
		if i < 0 {
			break
		}
		p.seat = append(p.seat, seating{k, int32(i), kv})
		p.busy[i], p.seated[i] = true, true
		p.tokens[i], p.fed[i] = w.prompt+w.forced, kv.keep
	}
}

// planFeeds fills the batch: one token for each decoding sequence, then
// chunks round-robin until the budget is spent; logits for the last token
// of a sequence's tail.
func planFeeds(v *view, p *stepPlan) {
	n := len(v.slots)
	budget := v.budget
	for i := range n {
		if p.busy[i] && p.tokens[i]-p.fed[i] == 1 {
			p.feeds = append(p.feeds, feed{int32(i), p.fed[i], 1, true})
			p.logits[i] = true
			budget--
		}
	}
	for k := 0; k < n && budget > 0; k++ {
		i := (v.rr + k) % n
		pending := p.tokens[i] - p.fed[i]
		if !p.busy[i] || pending < 2 {
			continue
		}
		take := min(pending, budget)
		p.feeds = append(p.feeds, feed{int32(i), p.fed[i], take, take == pending})
		p.logits[i] = take == pending
		budget -= take
	}
	if len(p.feeds) > 0 {
		p.rr = (v.rr + 1) % n
	}
	for i, l := range p.logits {
		if l {
			p.sample = append(p.sample, int32(i))
		}
	}
}

// chooseSlot picks a free slot for w and how its KV starts, or -1 when no
// slot is free. Without the prefix cache it takes the coldest free slot
// (empty first, then dirty, then least recently used). With it, it finds the longest
// prefix of the prompt that some slot's KV holds:
//   - the idle slot holding the longest prefix (the least recently used of
//     equals) is trimmed and reused in place, unless what it holds beyond
//     the prefix is at least as long as the prefix and an empty slot is
//     there: then (say only a shared system prompt matches a long idle
//     session) the empty slot gets a copy trimmed to the prefix, and the
//     idle session keeps all its KV;
//   - a running slot's KV (as far as it has been fed) is copied whole and
//     trimmed when it holds a longer prefix than any idle slot;
//   - below minReuse tokens the coldest free slot is taken as is.
//
// Slots seated earlier in the same plan are not sources: their KV is not
// set up yet. At least one prompt token is always left to feed, for the
// logits.
func chooseSlot(v *view, p *stepPlan, w waitingView) (int, kvPlan) {
	victim := -1
	for i := range v.slots {
		if !p.busy[i] && (victim < 0 || colder(v.slots[i], v.slots[victim])) {
			victim = i
		}
	}
	if victim < 0 {
		return -1, kvPlan{}
	}
	fresh := kvPlan{copyFrom: -1, clear: v.slots[victim].resident > 0 || v.slots[victim].dirty}
	if w.matches == nil {
		return victim, fresh
	}
	bestFree, freeMatch, runSlot, runMatch := -1, 0, -1, 0
	for i, sl := range v.slots {
		m := w.matches[i]
		switch {
		case p.seated[i] || sl.dirty:
		case sl.running:
			// A running slot is indexed by its prompt; only what has been
			// fed is in its KV.
			if m = min(m, sl.fed); m > runMatch {
				runSlot, runMatch = i, m
			}
		case m > freeMatch || (m == freeMatch && m > 0 && colder(sl, v.slots[bestFree])):
			bestFree, freeMatch = i, m
		}
	}
	limit := w.prompt - 1
	switch {
	case freeMatch >= minReuse && freeMatch >= runMatch:
		keep := min(freeMatch, limit)
		if lost := v.slots[bestFree].resident - freeMatch; lost >= freeMatch && v.slots[victim].resident == 0 {
			return victim, kvPlan{copyFrom: int32(bestFree), keep: keep, clear: true}
		}
		return bestFree, kvPlan{copyFrom: -1, keep: keep, clear: true}
	case runMatch >= minReuse:
		return victim, kvPlan{copyFrom: int32(runSlot), keep: min(runMatch, limit), clear: true}
	}
	return victim, fresh
}

// colder reports whether free slot a is a better victim than b: empty
// first, then least recently used (a dirty slot, last used at 0, before
// any idle one).
func colder(a, b slotView) bool {
	if ea, eb := a.resident == 0 && !a.dirty, b.resident == 0 && !b.dirty; ea != eb {
		return ea
	}
	return a.lastUse < b.lastUse
}
