package nextaction

import (
	"errors"
	"fmt"
	"math"
)

var negInf = float32(math.Inf(-1))

// errNoToken is returned by Mask when nothing may come next.
var errNoToken = errors.New("constraint: no token can continue the output within the token budget")

// ByteConstraint decodes under a Grammar. It implements batching.Constraint
// and its optional Forced extension; one per request, used by one goroutine.
type ByteConstraint struct {
	v     *Vocab
	g     *Grammar
	state []thread
	tmp   []thread
	out   []byte
	// forced are tokens the grammar requires next (a literal run), handed
	// out by Forced.
	forced []int32
	done   bool

	// scratch
	allowed    []int32
	saved      []float32
	depth      [][]thread
	fitA, fitB []thread
	fitC       []thread
	frees      []freeThread
	ts         tset // deduplicates the states built
}

// NewByteConstraint starts a constraint at the grammar's beginning.
func NewByteConstraint(v *Vocab, g *Grammar) *ByteConstraint {
	c := &ByteConstraint{v: v, g: g}
	c.state = g.initial(&c.ts)
	c.advanceForced()
	return c
}

// Output is every byte generated so far (sampled and forced).
func (c *ByteConstraint) Output() []byte { return c.out }

// Done reports whether the output is complete.
func (c *ByteConstraint) Done() bool { return c.done }

// MinTokens is the fewest tokens a complete output can take: at worst one
// token per byte.
func (c *ByteConstraint) MinTokens() int { return c.g.minBytes }

// Forced hands out (once) the tokens the grammar requires next.
func (c *ByteConstraint) Forced() []int32 {
	f := c.forced
	c.forced = nil
	return f
}

// Mask sets every disallowed token's logit to -Inf. A token is allowed when
// its bytes continue the grammar and what is left can still be completed in
// the tokens that remain after it.
func (c *ByteConstraint) Mask(logits []float32, remaining int) error {
	if c.done {
		return errors.New("constraint: output already complete")
	}
	budget := remaining - 1
	if mode, ok := c.freeOnly(budget); ok {
		return c.maskFree(logits, budget, mode)
	}
	c.allowed = c.allowed[:0]
	c.walk(0, c.state, 0, budget)
	if acc, _ := c.g.accepting(c.state); acc {
		c.allowed = append(c.allowed, c.v.eog...)
	}
	if len(c.allowed) == 0 {
		return errNoToken
	}
	c.keepOnly(logits)
	return nil
}

// keepOnly sets every logit but those of c.allowed to -Inf.
func (c *ByteConstraint) keepOnly(logits []float32) {
	c.saved = c.saved[:0]
	for _, t := range c.allowed {
		c.saved = append(c.saved, logits[t])
	}
	for i := range logits {
		logits[i] = negInf
	}
	for i, t := range c.allowed {
		logits[t] = c.saved[i]
	}
}

// freeThread is a free node's thread as the fast path sees it: n
// characters taken of min to max, and d the fewest bytes after the text.
type freeThread struct{ n, min, max, d int32 }

// freeOnly reports whether the state is inside free text of one mode, at a
// character boundary, whose only exits start with a byte that cannot start
// text; it collects the free threads that can still finish within the
// budget into c.frees. Then a token that is all text is allowed exactly
// when some thread can take its characters (see fitsText).
func (c *ByteConstraint) freeOnly(budget int) (textMode, bool) {
	c.frees = c.frees[:0]
	mode, seen := modePlain, false
	for _, t := range c.state {
		n := &c.g.nodes[t.node]
		if n.kind != nFree {
			continue
		}
		if t.s != strInit || (seen && n.mode != mode) {
			return 0, false
		}
		mode, seen = n.mode, true
		if d := c.g.nodes[n.out].dist; int(d) <= budget {
			c.frees = append(c.frees, freeThread{n: t.n, min: n.min, max: n.max, d: d})
		}
	}
	if !seen {
		return 0, false
	}
	for _, t := range c.state {
		switch n := &c.g.nodes[t.node]; n.kind {
		case nByte:
			if n.cls != 0 || startsText(mode, n.b) { // a class (digits) holds text bytes
				return 0, false
			}
		case nMatch:
			return 0, false
		}
	}
	return mode, true
}

// fitsText reports whether some free thread can take chars more
// characters, then need bytes to finish a character under way, and still
// finish within the budget.
func (c *ByteConstraint) fitsText(chars int32, need int32, budget int) bool {
	for _, f := range c.frees {
		if f.n+chars <= f.max && int64(need)+int64(max(0, f.min-f.n-chars))+int64(f.d) <= int64(budget) {
			return true
		}
	}
	return false
}

// exitBytes is every byte an nByte thread may take now or once the free
// text in the state has reached its minimum.
func (c *ByteConstraint) exitBytes() (set [256]bool) {
	var scan []thread
	c.ts.begin()
	for _, t := range c.state {
		n := &c.g.nodes[t.node]
		if n.kind == nFree {
			scan = c.g.closure(&c.ts, scan, thread{node: n.out})
		}
	}
	for _, t := range append(scan, c.state...) {
		if n := &c.g.nodes[t.node]; n.kind == nByte {
			if n.cls == 0 {
				set[n.b] = true
				continue
			}
			for b := range 256 {
				set[b] = set[b] || c.g.classes[n.cls].has(byte(b))
			}
		}
	}
	return set
}

// maskFree is the fast path inside free text: one pass over the
// vocabulary's text index (or, mid-text, over the tokens that are not all
// text), then only the tokens whose first non-text byte can leave the text
// are simulated, and the tokens that end inside a character are checked
// against the budget.
func (c *ByteConstraint) maskFree(logits []float32, budget int, mode textMode) error {
	x := &c.v.text[mode]
	c.allowed = c.allowed[:0]
	exits := c.exitBytes()
	if mode == modeJSON {
		for b := 0xf0; b <= 0xf4; b++ {
			exits[b] = true // characters above U+FFFF: simulated (runText)
		}
	}
	for b, ok := range exits {
		if !ok {
			continue
		}
		for _, t := range x.unsafeBy[b] {
			if c.fitsAfterText(t, budget, mode) {
				c.allowed = append(c.allowed, t)
			}
		}
	}
	for i, t := range x.partial {
		if c.fitsText(x.partialChars[i], int32(x.partialNeed[i]), budget) {
			c.allowed = append(c.allowed, t)
		}
	}
	c.saved = c.saved[:0]
	for _, t := range c.allowed {
		c.saved = append(c.saved, logits[t])
	}
	any := len(c.allowed) > 0
	if len(c.frees) == 1 && c.fitsText(1, 0, budget) && c.fitsText(x.maxText, 0, budget) {
		// Every all-text token fits (the usual case mid-text): only the
		// others need masking. One thread's fit is monotone in between.
		any = any || x.maxText > 0
		for _, t := range x.notText {
			logits[t] = negInf
		}
	} else {
		for i, l := range x.runLen {
			if l > 0 && c.fitsText(l, 0, budget) {
				any = true
				continue
			}
			logits[i] = negInf
		}
	}
	for i, t := range c.allowed {
		logits[t] = c.saved[i]
	}
	if !any {
		return errNoToken
	}
	return nil
}

// fitsAfterText simulates a token whose first bytes are text, ending at a
// character boundary, inside free text where no other thread takes text
// bytes: the free threads take those bytes in one move, then the rest is
// stepped byte by byte.
func (c *ByteConstraint) fitsAfterText(tok int32, budget int, mode textMode) bool {
	x := &c.v.text[mode]
	k, chars := x.prefixLen[tok], x.prefixChars[tok]
	if k == 0 {
		return c.fits(tok, budget, c.state, 0)
	}
	start := c.fitC[:0]
	c.ts.begin()
	for _, t := range c.state {
		n := &c.g.nodes[t.node]
		if n.kind == nFree && t.n+chars <= n.max {
			start = c.g.closure(&c.ts, start, thread{node: t.node, n: t.n + chars})
		}
	}
	c.fitC = start
	if len(start) == 0 {
		return false
	}
	return c.fits(tok, budget, start, int(k))
}

// fits simulates the bytes of a token from offset `from`, starting in cur.
func (c *ByteConstraint) fits(tok int32, budget int, cur []thread, from int) bool {
	p := c.v.pieces[tok]
	x, y := c.fitA, c.fitB
	defer func() { c.fitA, c.fitB = x, y }()
	for i := from; i < len(p); i++ {
		x = c.g.step(&c.ts, x, cur, p[i])
		if len(x) == 0 {
			return false
		}
		cur = x
		x, y = y, x // write the next step into the other buffer
	}
	return c.g.dist(cur) <= budget
}

// walk visits the vocabulary trie below node n in state s, collecting the
// tokens whose whole piece the grammar allows within the budget.
func (c *ByteConstraint) walk(n int32, s []thread, d int, budget int) {
	for len(c.depth) <= d {
		c.depth = append(c.depth, nil)
	}
	for ch := c.v.trie[n].child; ch >= 0; ch = c.v.trie[ch].next {
		next := c.g.step(&c.ts, c.depth[d], s, c.v.trie[ch].b)
		c.depth[d] = next
		if len(next) == 0 {
			continue
		}
		if tok := c.v.trie[ch].tok; tok >= 0 && c.g.dist(next) <= budget {
			c.allowed = append(c.allowed, tok)
			c.allowed = append(c.allowed, c.v.dups[ch]...)
		}
		// depth[d] is reused by the next sibling; children use d+1.
		c.walk(ch, next, d+1, budget)
	}
}

// Allows reports whether Mask would keep tok.
func (c *ByteConstraint) Allows(tok int32, remaining int) bool {
	if c.done || tok < 0 || int(tok) >= len(c.v.pieces) {
		return false
	}
	if c.v.special[tok] {
		acc, _ := c.g.accepting(c.state)
		return acc && c.isEOG(tok)
	}
	return c.fits(tok, remaining-1, c.state, 0)
}

// Accept advances past tok.
func (c *ByteConstraint) Accept(tok int32) (bool, error) {
	if c.done {
		return true, errors.New("constraint: output already complete")
	}
	if c.isEOG(tok) {
		if acc, _ := c.g.accepting(c.state); !acc {
			return false, fmt.Errorf("constraint: end of generation before the output is complete")
		}
		c.done = true
		return true, nil
	}
	p := c.v.pieces[tok]
	for i := 0; i < len(p); i++ {
		c.tmp = c.g.step(&c.ts, c.tmp, c.state, p[i])
		if len(c.tmp) == 0 {
			return false, fmt.Errorf("constraint: token %d (%q) does not continue the output", tok, p)
		}
		c.state, c.tmp = c.tmp, c.state
	}
	c.out = append(c.out, p...)
	c.advanceForced()
	return c.done, nil
}

func (c *ByteConstraint) isEOG(tok int32) bool {
	for _, e := range c.v.eog {
		if e == tok {
			return true
		}
	}
	return false
}

// advanceForced takes the bytes the grammar requires next, tokenizes them
// and queues them for Forced; it marks the output done when nothing may
// follow.
func (c *ByteConstraint) advanceForced() {
	var run []byte
	for {
		if _, final := c.g.accepting(c.state); final {
			c.done = true
			break
		}
		b, ok := c.g.forcedByte(c.state)
		if !ok {
			break
		}
		c.tmp = c.g.step(&c.ts, c.tmp, c.state, b)
		c.state, c.tmp = c.tmp, c.state
		run = append(run, b)
	}
	if len(run) == 0 {
		return
	}
	toks, ok := c.v.tokenizeGreedy(string(run))
	if !ok {
		// Cannot happen with a byte-level vocabulary; fail loudly in Mask.
		c.state = nil
		return
	}
	c.out = append(c.out, run...)
	c.forced = append(c.forced, toks...)
}
