package batching

// Logprobs: the model's log-softmax of a raw logits row, for the tokens a
// request outputs (Request.Logprobs) and for its prompt's tokens
// (Request.EchoLogprobs).
//
// The values are computed in the sampling phase from the row exactly as the
// engine left it, before drawToken touches it: before any constraint masks
// it and before temperature, top-k or top-p. One linear pass finds the
// maximum, a second sums exp(l - max) and keeps the TopLogprobs best tokens
// in a small heap (no sort of the row). Tokens a Forcer constraint requires
// are, for a request with logprobs, fed one per step and each read from its
// own row, so every output token has a logprob. A request with
// EchoLogprobs asks the engine for the logits of every prompt position and
// takes no prefix reuse (every position is computed).

import (
	"fmt"
	"math"
	"slices"
)

// MaxTopLogprobs bounds Request.TopLogprobs.
const MaxTopLogprobs = 20

// maxScoreRows bounds the prompt positions of echo requests scored in one
// step: each is a vocabulary-sized logits row in the engine's output
// buffer, which grows to the most rows one step asks for. A longer prompt
// chunk is fed over several steps.
const maxScoreRows = 256

// ExpSummer is an optional extension of Engine: the sum of e^(l - max)
// over a logits row, by a vectorised exp (the logprobs' normaliser, the
// bulk of their cost). scratch is working memory of any length above 0
// (expSumScratch floats); NaN when a logit is NaN (the scheduler then sums
// in Go, where NaN counts as -Inf). MUST be goroutine-safe: the sampling
// workers call it at once.
type ExpSummer interface {
	ExpSum(row []float32, max float32, scratch []float32) float64
}

// expSumScratch is the ExpSummer's scratch, in floats: 16 KiB, which stays
// in a core's first-level cache.
const expSumScratch = 4096

// TopLogprob is one of the most likely tokens at a position.
type TopLogprob struct {
	ID      int32
	Logprob float32
}

// TokenLogprob is the logprob of a token at its position and the most
// likely tokens there, best first (higher logprob, then lower id).
type TokenLogprob struct {
	ID      int32
	Logprob float32
	Top     []TopLogprob
}

// logprobState is a sequence's logprob bookkeeping.
type logprobState struct {
	// forced are tokens a Forcer constraint requires next, still to be
	// fed one per step (oneByOne: a request with logprobs); the
	// constraint is already past them.
	forced   []int32
	oneByOne bool
	// tok is the logprob of the token drawn this step, written in the
	// sampling phase and handed out with its text.
	tok *TokenLogprob
	// prompt[p] is the logprob of prompt token p+1 (echo), filled as the
	// prompt's rows are computed; sent once the prompt is done.
	prompt     []TokenLogprob
	promptSent bool
}

// take hands out this step's token logprob once.
func (l *logprobState) take() *TokenLogprob {
	t := l.tok
	l.tok = nil
	return t
}

// scoreRow is a prompt position of an echo request whose logits the step
// in flight computes: batch entry row, position pos of q.
type scoreRow struct {
	q        *sequence
	row, pos int
}

// checkLogprobs validates a request's logprob fields.
func checkLogprobs(req *Request) error {
	switch {
	case req.TopLogprobs < 0 || req.TopLogprobs > MaxTopLogprobs:
		return &RequestError{Field: "top_logprobs", Msg: fmt.Sprintf("must be in [0, %d], got %d", MaxTopLogprobs, req.TopLogprobs)}
	case req.TopLogprobs > 0 && !req.Logprobs && !req.EchoLogprobs:
		return &RequestError{Field: "top_logprobs", Msg: "needs logprobs"}
	case req.ScoreOnly && req.MaxTokens != 0:
		return &RequestError{Field: "max_tokens", Msg: "must be 0 for a prompt-only request"}
	}
	return nil
}

// openLogprobs sets up a new sequence's logprob state (Submit): the
// prompt's slots for echo, and for a request with logprobs under a Forcer
// constraint, the opening forced tokens to be fed one by one. It reports
// whether it took the constraint's opening (the caller then does not).
func (s *Scheduler) openLogprobs(q *sequence) bool {
	if q.req.EchoLogprobs && q.promptLen > 1 {
		q.lp.prompt = make([]TokenLogprob, q.promptLen-1)
	}
	f, ok := q.req.Constraint.(Forcer)
	if !ok || !q.req.Logprobs {
		return false
	}
	q.lp.oneByOne = true
	q.lp.forced = f.Forced()
	q.complete = len(q.lp.forced) == 0 && f.Done()
	return true
}

// drawLogged is drawToken for any request: for one with logprobs the row's
// logprobs are taken first, from the raw row, and the token's kept in q.lp
// (but for an end-of-generation token);
// a forced token waiting (one by one) is the token. A prompt-only request
// draws nothing.
func (s *Scheduler) drawLogged(q *sequence, logits []float32, sc *sampleScratch) (int32, error) {
	switch {
	case q.req.ScoreOnly:
		return 0, nil
	case !q.req.Logprobs:
		return s.drawToken(q, logits, sc)
	}
	st, ok := rowStats(logits, q.req.TopLogprobs, sc, s.summer)
	if !ok {
		return 0, ErrNoFiniteLogit
	}
	var tok int32
	var raw float32
	if len(q.lp.forced) > 0 {
		// Not drawn: the row is as the engine left it (penalties change
		// only a row they are applied to, and none is here).
		tok = q.lp.forced[0]
		raw = logits[tok]
	} else {
		var err error
		if tok, err = s.drawToken(q, logits, sc); err != nil {
			return 0, err
		}
		raw = q.pen.raw(tok, logits)
	}
	if !s.vocab.IsEOG(tok) { // the end of generation is no output token
		q.lp.tok = st.token(tok, raw)
	}
	return tok, nil
}

// acceptOneByOne is acceptConstrained for a request whose forced tokens
// are fed one by one: a forced token only leaves the queue (the constraint
// is past it); a sampled one is accepted, and what the constraint forces
// next queued. The output is complete when the constraint is and nothing
// forced is left.
func (s *Scheduler) acceptOneByOne(q *sequence, tok int32) (FinishReason, error) {
	f := q.req.Constraint.(Forcer)
	var done bool
	if len(q.lp.forced) > 0 {
		q.lp.forced = q.lp.forced[1:]
		done = len(q.lp.forced) == 0 && f.Done()
	} else {
		var err error
		if done, err = q.req.Constraint.Accept(tok); err != nil {
			return FinishError, err
		}
		q.lp.forced = f.Forced()
		done = done && len(q.lp.forced) == 0
	}
	text := ""
	if !s.vocab.IsEOG(tok) {
		text = s.vocab.Piece(tok)
	}
	out, _ := q.text.push(text)
	return emitToken(q, tok, out, done), nil
}

// scoreFeed is how many of feed f's tokens go into this step for q: all,
// or for an echo request only as many prompt positions as fit this step's
// scoring rows, possibly none (the rest is fed at the next steps; another
// sequence's feed fills the step, so it is never empty).
func (s *Scheduler) scoreFeed(q *sequence, f feed) int {
	if !q.req.EchoLogprobs {
		return f.n
	}
	scored := min(f.from+f.n, q.promptLen-1) - f.from // positions with a prompt token after them
	if left := maxScoreRows - len(s.scoring); scored > left {
		return left // every position fed is scored; none when the rows are spent
	}
	return f.n
}

// scorePosition records that batch entry row, position pos of q, is a
// prompt position to score, and reports whether it is (its logits are
// then asked for).
func (s *Scheduler) scorePosition(q *sequence, pos, row int) bool {
	if !q.req.EchoLogprobs || pos >= q.promptLen-1 || len(s.scoring) >= maxScoreRows {
		return false
	}
	s.scoring = append(s.scoring, scoreRow{q: q, row: row, pos: pos})
	return true
}

// scorePrompts computes the logprobs of the prompt positions the step just
// decoded scored, in parallel (each row and each q.lp.prompt entry is one
// worker's), and drops the list.
func (s *Scheduler) scorePrompts() {
	rows := s.scoring[:0]
	for _, r := range s.scoring {
		if s.slots[r.q.slot] == r.q { // not ended while the step computed
			rows = append(rows, r)
		}
	}
	views := s.scoreViews[:0]
	for _, r := range rows {
		var view []float32
		err := s.contain("engine", func() (err error) {
			view, err = s.engine.Logits(r.row)
			return err
		})
		if err != nil {
			view = nil
		}
		views = append(views, view)
	}
	fanOut(len(s.scratch), len(rows), func(w, i int) {
		r := rows[i]
		tok := r.q.tokens[r.pos+1]
		if st, ok := rowStats(views[i], r.q.req.TopLogprobs, &s.scratch[w], s.summer); ok {
			r.q.lp.prompt[r.pos] = *st.token(tok, views[i][tok])
		} else {
			r.q.lp.prompt[r.pos] = TokenLogprob{ID: tok, Logprob: float32(math.Inf(-1))}
		}
	})
	clear(views)
	clear(s.scoring)
	s.scoreViews, s.scoring = views[:0], s.scoring[:0]
}

// afterPrompt runs on the loop goroutine for q's sampled row before its
// token is applied: at the end of the prompt, an echo request's prompt
// logprobs go out, and a prompt-only request ends (FinishLength). It
// reports whether q ended.
func (s *Scheduler) afterPrompt(q *sequence, d draw) bool {
	if d.err != nil {
		return false
	}
	if q.req.EchoLogprobs && !q.lp.promptSent {
		q.lp.promptSent = true
		q.h.setPrompt(q.lp.prompt)
	}
	if q.req.ScoreOnly {
		s.finish(q, FinishLength, nil)
		return true
	}
	return false
}

// stats is a row's normaliser (max + log-sum-exp) and its best tokens.
type stats struct {
	norm float64
	top  []TopLogprob
}

// lseWindow: a logit this far below the row's maximum adds under e^-40
// (4e-18) of the maximum's share to the sum; such tokens are skipped in
// it (the whole row would shift the sum by under 1e-12 at a 128k
// vocabulary).
const lseWindow = 40

// rowStats reads a raw logits row: its log-softmax normaliser and its top
// best tokens (finite logits only; NaN and -Inf never), best first. Two
// linear passes: the top (whose best is the maximum; without a top, the
// maximum alone), then the sum; no sort but of the top. The sum is
// summer's when there is one and it is finite, else expSum's. ok is false
// when the row has no finite maximum. The top slice is new (it is handed
// out); sc.cands is the heap, sc.terms summer's scratch.
func rowStats(logits []float32, top int, sc *sampleScratch, summer ExpSummer) (stats, bool) {
	var maxL float32
	h := sc.cands[:0]
	if top > 0 {
		h = topN(logits, top, h)
		sc.cands = h[:0]
		if len(h) == 0 {
			return stats{}, false
		}
		slices.SortFunc(h, func(a, b candidate) int {
			if better(a, b) {
				return -1
			}
			return 1
		})
		maxL = float32(h[0].logit)
	} else {
		best := argmax(logits)
		if best < 0 {
			return stats{}, false
		}
		maxL = logits[best]
	}
	if math.IsInf(float64(maxL), 1) {
		return stats{}, false
	}
	sum := math.NaN()
	if summer != nil {
		sc.terms = grow(sc.terms, expSumScratch)
		sum = summer.ExpSum(logits, maxL, sc.terms)
	}
	if math.IsNaN(sum) || math.IsInf(sum, 0) || sum < 1 { // the maximum's own term is 1
		sum = expSum(logits, maxL)
	}
	st := stats{norm: float64(maxL) + math.Log(sum)}
	if len(h) > 0 {
		st.top = make([]TopLogprob, len(h))
		for i, c := range h {
			st.top[i] = TopLogprob{ID: c.id, Logprob: float32(c.logit - st.norm)}
		}
	}
	return st, true
}

// topN keeps in h (a min-heap under better, h[0] the worst) the top
// tokens of the row with the highest logits above -Inf (NaN never; ties
// to the lower id). Like argmax, it tests eight logits against the heap's
// worst at once and walks a block one by one only when one of them is
// above it, which once the heap is full is rare.
func topN(logits []float32, top int, h []candidate) []candidate {
	floor := float32(math.Inf(-1)) // the heap's worst once it is full
	take := func(i int, l float32) {
		c := candidate{id: int32(i), logit: float64(l)}
		if len(h) < top {
			h = append(h, c)
			heapUp(h, len(h)-1)
		} else {
			h[0] = c
			heapDown(h, 0)
		}
		if len(h) == top {
			floor = float32(h[0].logit)
		}
	}
	i := 0
	for ; i+8 <= len(logits); i += 8 {
		c := logits[i : i+8 : i+8]
		if c[0] > floor || c[1] > floor || c[2] > floor || c[3] > floor || c[4] > floor || c[5] > floor || c[6] > floor || c[7] > floor {
			for k, l := range c {
				if l > floor {
					take(i+k, l)
				}
			}
		}
	}
	for ; i < len(logits); i++ {
		if l := logits[i]; l > floor {
			take(i, l)
		}
	}
	return h
}

// token is tok's logprob with the row's top: from the top when tok is
// there, else from the row (which only masks, never changes, a token that
// could be drawn).
func (st stats) token(tok int32, raw float32) *TokenLogprob {
	t := &TokenLogprob{ID: tok, Top: st.top}
	for _, c := range st.top {
		if c.ID == tok {
			t.Logprob = c.Logprob
			return t
		}
	}
	t.Logprob = float32(float64(raw) - st.norm)
	return t
}

// expSum is the sum of e^(l - maxL) over the row's logits within
// lseWindow of maxL (NaN never), by expWindow, in four independent sums
// (so the loop is not bound by the adder's latency).
func expSum(logits []float32, maxL float32) float64 {
	thr, m := maxL-lseWindow, float64(maxL)
	term := func(l float32) float64 {
		if l > thr {
			return expWindow(float64(l) - m)
		}
		return 0
	}
	var a, b, c, d float64
	i := 0
	for ; i+4 <= len(logits); i += 4 {
		r := logits[i : i+4 : i+4]
		a += term(r[0])
		b += term(r[1])
		c += term(r[2])
		d += term(r[3])
	}
	for ; i < len(logits); i++ {
		a += term(logits[i])
	}
	return (a + b) + (c + d)
}

// expWindow is e^x for x in [-lseWindow, 0], to a relative 1e-7 (below
// a float32 logprob's resolution), about twice as fast as math.Exp:
// x·64·log2(e) rounded to an integer k by adding 1.5·2^52 (k lands in the
// low bits); e^x = 2^(k/64) · e^y with |y| <= ln2/128, 2^(k/64) as
// 2^(k>>6) (put in the exponent's bits) times a table entry 2^((k&63)/64),
// e^y by its Taylor series to degree 3 (the first term left out is under
// 4e-11).
func expWindow(x float64) float64 {
	const (
		scale = 64 * 1.4426950408889634 // 64·log2(e)
		ln2   = 0.6931471805599453 / 64
		round = 0x1.8p52
	)
	t := x * scale
	kd := t + round
	k := math.Float64bits(kd)
	y := (t - (kd - round)) * ln2
	p := 1 + y*(1+y*(0.5+y*(1.0/6)))
	return p * exp2Table[k&63] * math.Float64frombits(((k>>6)+1023)<<52)
}

// exp2Table[j] is 2^(j/64).
var exp2Table = func() (t [64]float64) {
	for j := range t {
		t[j] = math.Exp2(float64(j) / 64)
	}
	return t
}()
