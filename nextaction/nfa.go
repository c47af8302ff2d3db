package nextaction

import (
	"container/heap"
	"fmt"
	"slices"
	"unsafe"
)

// The constrained decoder works on bytes: a Grammar is a small NFA over the
// bytes of the output, built from literals, choices, bounded free text and
// repetition. Free text is a run of "text bytes" (printable ASCII except '"'
// and '\'), so every string the decoder writes is a valid JSON string with
// no escapes. Every node knows the fewest bytes from it to the end, which is
// how a generation that runs out of tokens still closes its JSON.

type nodeKind uint8

const (
	nByte  nodeKind = iota // one byte b (or, with cls set, any byte of that class), then out
	nSplit                 // epsilon to every alt
	nFree                  // text bytes: at least min, at most max, then out
	nMatch                 // the output is complete
)

type node struct {
	kind     nodeKind
	b        byte
	cls      uint16 // nByte: when non-zero, the byte class (Grammar.classes) instead of b
	out      int32
	alts     []int32
	min, max int32
	dist     int32 // fewest bytes from entering this node to the end (saturated at maxDist)
}

// Distances saturate: no output of a billion bytes fits any context, and
// int32 sums of crafted bounds (4096 items of 4096 bytes, nested) must not
// wrap.
const (
	maxDist = int32(1<<30) - 1
	infDist = int32(1 << 30) // unreachable
)

func addDist(a, b int32) int32 { return min(int64To32(int64(a)+int64(b)), maxDist) }

func int64To32(x int64) int32 {
	if x > int64(maxDist) {
		return maxDist
	}
	return int32(x)
}

// isTextByte reports whether b may appear in free text.
func isTextByte(b byte) bool { return b >= 0x20 && b < 0x7f && b != '"' && b != '\\' }

// Grammar is a compiled, immutable NFA; constraints built from it share it.
type Grammar struct {
	nodes []node
	// classes are the byte sets of class nodes; entry 0 is unused.
	classes []byteSet
	start   int32
	// minBytes is the shortest complete output.
	minBytes int
	// bytes is the memory the grammar holds, for the cache's bound.
	bytes int64
}

// Nodes is the number of NFA nodes, the grammar's compiled size.
func (g *Grammar) Nodes() int { return len(g.nodes) }

// Bytes is about the memory the grammar holds.
func (g *Grammar) Bytes() int64 { return g.bytes }

// thread is a position in the NFA; n counts the bytes taken in a free node.
type thread struct {
	node int32
	n    int32
}

// byteSet is a set of bytes.
type byteSet [4]uint64

func (s *byteSet) has(c byte) bool { return s[c>>6]&(1<<(c&63)) != 0 }
func (s *byteSet) add(c byte)      { s[c>>6] |= 1 << (c & 63) }

// matches reports whether nByte node n takes byte c.
func (g *Grammar) matches(n *node, c byte) bool {
	if n.cls != 0 {
		return g.classes[n.cls].has(c)
	}
	return n.b == c
}

// builder assembles a Grammar. With maxNodes set, it stops growing once
// the grammar would exceed it (over is set; the parts built from then on
// are junk, and compile refuses them): a hard cap behind the schema
// compiler's estimate.
type builder struct {
	nodes    []node
	classes  []byteSet // index 0 unused
	classOf  map[string]uint16
	maxNodes int
	over     bool
}

// class is one node taking any byte of chars (a digit, say), instead of a
// choice of one node per byte.
func (b *builder) class(chars string) part {
	if len(chars) == 1 {
		return b.lit(chars)
	}
	id, ok := b.classOf[chars]
	if !ok {
		if b.classes == nil {
			b.classes, b.classOf = make([]byteSet, 1), map[string]uint16{}
		}
		var set byteSet
		for i := 0; i < len(chars); i++ {
			set.add(chars[i])
		}
		id = uint16(len(b.classes))
		b.classes = append(b.classes, set)
		b.classOf[chars] = id
	}
	n := b.add(node{kind: nByte, cls: id})
	return part{start: n, holes: []hole{{n, -1}}}
}

func (b *builder) add(n node) int32 {
	if b.maxNodes > 0 && len(b.nodes) >= b.maxNodes {
		b.over = true
		if len(b.nodes) > 0 {
			return 0 // junk, never compiled
		}
	}
	n.out, n.dist = -1, -1
	b.nodes = append(b.nodes, n)
	return int32(len(b.nodes) - 1)
}

// hole is a dangling out pointer, named by node index (b.nodes may grow).
type hole struct {
	node int32
	alt  int // -1 for out, else index into alts
}

// part is a piece of NFA under construction: its entry and its holes.
type part struct {
	start int32
	holes []hole
}

func (b *builder) patch(p part, to int32) {
	for _, h := range p.holes {
		if h.alt < 0 {
			b.nodes[h.node].out = to
		} else {
			b.nodes[h.node].alts[h.alt] = to
		}
	}
}

// empty matches nothing: a split with one alt left open.
func (b *builder) empty() part {
	n := b.add(node{kind: nSplit, alts: []int32{-1}})
	return part{start: n, holes: []hole{{n, 0}}}
}

func (b *builder) lit(s string) part {
	if s == "" {
		return b.empty()
	}
	first := b.add(node{kind: nByte, b: s[0]})
	prev := first
	for i := 1; i < len(s); i++ {
		n := b.add(node{kind: nByte, b: s[i]})
		b.nodes[prev].out = n
		prev = n
	}
	return part{start: first, holes: []hole{{prev, -1}}}
}

func (b *builder) free(min, max int) part {
	n := b.add(node{kind: nFree, min: int32(min), max: int32(max)})
	return part{start: n, holes: []hole{{n, -1}}}
}

func (b *builder) seq(ps ...part) part {
	if len(ps) == 0 {
		return b.empty()
	}
	for i := 0; i+1 < len(ps); i++ {
		b.patch(ps[i], ps[i+1].start)
	}
	return part{start: ps[0].start, holes: ps[len(ps)-1].holes}
}

func (b *builder) alt(ps ...part) part {
	if len(ps) == 1 {
		return ps[0]
	}
	alts := make([]int32, len(ps))
	var holes []hole
	for i, p := range ps {
		alts[i] = p.start
		holes = append(holes, p.holes...)
	}
	return part{start: b.add(node{kind: nSplit, alts: alts}), holes: holes}
}

// opt is p or nothing.
func (b *builder) opt(p part) part {
	n := b.add(node{kind: nSplit, alts: []int32{p.start, -1}})
	return part{start: n, holes: append(p.holes, hole{n, 1})}
}

// star is zero or more p; p must consume at least one byte.
func (b *builder) star(p part) part {
	n := b.add(node{kind: nSplit, alts: []int32{p.start, -1}})
	b.patch(p, n)
	return part{start: n, holes: []hole{{n, 1}}}
}

// oneOf matches exactly one of the strings, through a shared trie so that a
// choice among thousands of names stays cheap. The trie is built from the
// sorted words, one group of common first byte at a time: linear in their
// bytes (after the sort), with no map per trie node.
func (b *builder) oneOf(words []string) part {
	ws := slices.Clone(words)
	slices.Sort(ws)
	ws = slices.Compact(ws)
	return b.trie(ws, 0)
}

// trie emits the words (sorted, distinct, sharing their first depth bytes)
// from byte depth on: one branch per next byte, in byte order, then the
// end when a word ends here.
func (b *builder) trie(ws []string, depth int) part {
	var ps []part
	end := false
	for len(ws) > 0 {
		if len(ws[0]) == depth {
			end = true
			ws = ws[1:]
			continue
		}
		c := ws[0][depth]
		k := 1
		for k < len(ws) && ws[k][depth] == c {
			k++
		}
		n := b.add(node{kind: nByte, b: c})
		rest := b.trie(ws[:k], depth+1)
		b.nodes[n].out = rest.start
		ps = append(ps, part{start: n, holes: rest.holes})
		ws = ws[k:]
	}
	if end {
		ps = append(ps, b.empty())
	}
	return b.alt(ps...)
}

// compile closes p with a match node and computes distances.
func (b *builder) compile(p part) (*Grammar, error) {
	m := b.add(node{kind: nMatch})
	if b.over {
		return nil, fmt.Errorf("grammar: over %d nodes", b.maxNodes)
	}
	b.patch(p, m)
	g := &Grammar{nodes: b.nodes, classes: b.classes, start: p.start}
	if err := g.computeDist(); err != nil {
		return nil, err
	}
	g.minBytes = int(g.nodes[g.start].dist)
	g.bytes = int64(unsafe.Sizeof(node{})) * int64(cap(g.nodes))
	for i := range g.nodes {
		g.bytes += 4 * int64(cap(g.nodes[i].alts))
	}
	return g, nil
}

// computeDist finds, for every node, the fewest bytes to the match:
// Dijkstra from the match node over the reversed edges (weights: 1 for a
// byte, min for free text, 0 for a split), O(edges log nodes).
func (g *Grammar) computeDist() error {
	// Reversed edges in compressed rows: preds of node i are
	// from[at[i]:at[i+1]].
	at := make([]int32, len(g.nodes)+1)
	edge := func(yield func(from, to int32)) {
		for i := range g.nodes {
			n := &g.nodes[i]
			switch n.kind {
			case nByte, nFree:
				if n.out >= 0 {
					yield(int32(i), n.out)
				}
			case nSplit:
				for _, a := range n.alts {
					if a >= 0 {
						yield(int32(i), a)
					}
				}
			}
		}
	}
	edge(func(_, to int32) { at[to+1]++ })
	for i := 1; i < len(at); i++ {
		at[i] += at[i-1]
	}
	from := make([]int32, at[len(at)-1])
	fill := slices.Clone(at[:len(at)-1])
	edge(func(f, to int32) { from[fill[to]] = f; fill[to]++ })

	h := &distHeap{}
	for i := range g.nodes {
		g.nodes[i].dist = infDist
		if g.nodes[i].kind == nMatch {
			g.nodes[i].dist = 0
			heap.Push(h, distItem{node: int32(i)})
		}
	}
	for h.Len() > 0 {
		it := heap.Pop(h).(distItem)
		if it.dist != g.nodes[it.node].dist {
			continue // stale
		}
		for _, f := range from[at[it.node]:at[it.node+1]] {
			n := &g.nodes[f]
			w := int32(0)
			switch n.kind {
			case nByte:
				w = 1
			case nFree:
				w = n.min
			}
			if d := addDist(it.dist, w); d < n.dist {
				n.dist = d
				heap.Push(h, distItem{node: f, dist: d})
			}
		}
	}
	if g.nodes[g.start].dist >= infDist {
		return fmt.Errorf("grammar: no complete output exists")
	}
	return nil
}

type distItem struct{ node, dist int32 }

// distHeap is a min-heap of tentative distances.
type distHeap []distItem

func (h distHeap) Len() int           { return len(h) }
func (h distHeap) Less(i, j int) bool { return h[i].dist < h[j].dist }
func (h distHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *distHeap) Push(x any)        { *h = append(*h, x.(distItem)) }
func (h *distHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// MinBytes is the length of the shortest complete output.
func (g *Grammar) MinBytes() int { return g.minBytes }

// closure adds t and every thread reachable from it by epsilon moves to
// the set being built in ts (see tset.begin).
func (g *Grammar) closure(ts *tset, set []thread, t thread) []thread {
	ts.stack = append(ts.stack[:0], t)
	for len(ts.stack) > 0 {
		t := ts.stack[len(ts.stack)-1]
		ts.stack = ts.stack[:len(ts.stack)-1]
		if t.node < 0 || !ts.add(set, t) {
			continue
		}
		set = append(set, t)
		n := &g.nodes[t.node]
		switch n.kind {
		case nSplit:
			for i := len(n.alts) - 1; i >= 0; i-- { // first alt first
				ts.stack = append(ts.stack, thread{node: n.alts[i]})
			}
		case nFree:
			if t.n >= n.min {
				ts.stack = append(ts.stack, thread{node: n.out})
			}
		}
	}
	return set
}

// initial is the start state.
func (g *Grammar) initial(ts *tset) []thread {
	ts.begin()
	return g.closure(ts, nil, thread{node: g.start})
}

// step advances a state by one byte into dst (reused); an empty result means
// the byte is not allowed.
func (g *Grammar) step(ts *tset, dst, src []thread, c byte) []thread {
	dst = dst[:0]
	ts.begin()
	for _, t := range src {
		n := &g.nodes[t.node]
		switch n.kind {
		case nByte:
			if g.matches(n, c) {
				dst = g.closure(ts, dst, thread{node: n.out})
			}
		case nFree:
			if t.n < n.max && isTextByte(c) {
				dst = g.closure(ts, dst, thread{node: t.node, n: t.n + 1})
			}
		}
	}
	return dst
}

// tset deduplicates the threads of one state as it is built: a linear scan
// while the state is small (the usual case), a hash table once it is not,
// so building a state of n threads costs O(n), never O(n^2). One per
// goroutine (a constraint owns one); begin starts a new state.
type tset struct {
	stack []thread
	// Open addressing over thread keys; a slot is in use when its stamp is
	// the current epoch.
	keys   []uint64
	stamps []uint32
	epoch  uint32
	n      int  // threads in the table this epoch
	hashed bool // the state outgrew linear scans
}

// smallSet is the state size below which a linear scan beats hashing.
const smallSet = 16

func (ts *tset) begin() {
	ts.epoch++
	if ts.epoch == 0 { // wrapped: forget every stamp
		clear(ts.stamps)
		ts.epoch = 1
	}
	ts.n, ts.hashed = 0, false
}

func threadKey(t thread) uint64 { return uint64(uint32(t.node))<<32 | uint64(uint32(t.n)) }

// add records t, reporting whether it was new. set is the state so far.
func (ts *tset) add(set []thread, t thread) bool {
	if !ts.hashed {
		if slices.Contains(set, t) {
			return false
		}
		if len(set) < smallSet {
			return true
		}
		ts.hashed = true // index the state so far, then t
		for _, x := range set {
			ts.insert(threadKey(x))
		}
	}
	return ts.insert(threadKey(t))
}

// insert adds key to the table, reporting whether it was new.
func (ts *tset) insert(key uint64) bool {
	if 2*(ts.n+1) > len(ts.keys) {
		ts.grow()
	}
	mask := uint64(len(ts.keys) - 1)
	for i := (key * 0x9E3779B97F4A7C15) >> 32 & mask; ; i = (i + 1) & mask {
		if ts.stamps[i] != ts.epoch {
			ts.keys[i], ts.stamps[i] = key, ts.epoch
			ts.n++
			return true
		}
		if ts.keys[i] == key {
			return false
		}
	}
}

func (ts *tset) grow() {
	oldKeys, oldStamps := ts.keys, ts.stamps
	size := max(64, 2*len(oldKeys))
	ts.keys, ts.stamps = make([]uint64, size), make([]uint32, size)
	ts.n = 0
	for i, k := range oldKeys {
		if oldStamps[i] == ts.epoch {
			ts.insert(k)
		}
	}
}

// dist is the fewest bytes from a state to the end.
func (g *Grammar) dist(s []thread) int {
	best := infDist
	for _, t := range s {
		n := &g.nodes[t.node]
		d := n.dist
		if n.kind == nFree {
			d = addDist(max(0, n.min-t.n), g.nodes[n.out].dist)
		}
		best = min(best, d)
	}
	return int(best)
}

// accepting reports whether the output may end here, and final whether it
// must (nothing may follow).
func (g *Grammar) accepting(s []thread) (accepting, final bool) {
	final = true
	for _, t := range s {
		switch g.nodes[t.node].kind {
		case nMatch:
			accepting = true
		case nByte, nFree:
			final = false
		}
	}
	return accepting, accepting && final
}

// forcedByte returns the one byte every thread requires next, if there is
// exactly one and the state may not end.
func (g *Grammar) forcedByte(s []thread) (byte, bool) {
	var c byte
	seen := false
	for _, t := range s {
		n := &g.nodes[t.node]
		switch n.kind {
		case nMatch, nFree:
			return 0, false
		case nByte:
			if n.cls != 0 || (seen && n.b != c) {
				return 0, false
			}
			c, seen = n.b, true
		}
	}
	return c, seen
}
