package nextaction

import (
	"fmt"
	"slices"
)

// The constrained decoder works on bytes: a Grammar is a small NFA over the
// bytes of the output, built from literals, choices, bounded free text and
// repetition. Free text is a run of "text bytes" (printable ASCII except '"'
// and '\'), so every string the decoder writes is a valid JSON string with
// no escapes. Every node knows the fewest bytes from it to the end, which is
// how a generation that runs out of tokens still closes its JSON.

type nodeKind uint8

const (
	nByte  nodeKind = iota // one byte b, then out
	nSplit                 // epsilon to every alt
	nFree                  // text bytes: at least min, at most max, then out
	nMatch                 // the output is complete
)

type node struct {
	kind     nodeKind
	b        byte
	out      int32
	alts     []int32
	min, max int32
	dist     int32 // fewest bytes from entering this node to the end
}

// isTextByte reports whether b may appear in free text.
func isTextByte(b byte) bool { return b >= 0x20 && b < 0x7f && b != '"' && b != '\\' }

// Grammar is a compiled, immutable NFA; constraints built from it share it.
type Grammar struct {
	nodes []node
	start int32
	// minBytes is the shortest complete output.
	minBytes int
}

// thread is a position in the NFA; n counts the bytes taken in a free node.
type thread struct {
	node int32
	n    int32
}

// builder assembles a Grammar.
type builder struct {
	nodes []node
}

func (b *builder) add(n node) int32 {
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
// choice among thousands of names stays cheap.
func (b *builder) oneOf(words []string) part {
	type tnode struct {
		kids map[byte]*tnode
		end  bool
	}
	root := &tnode{kids: map[byte]*tnode{}}
	for _, w := range words {
		t := root
		for i := 0; i < len(w); i++ {
			k := t.kids[w[i]]
			if k == nil {
				k = &tnode{kids: map[byte]*tnode{}}
				t.kids[w[i]] = k
			}
			t = k
		}
		t.end = true
	}
	var emit func(t *tnode) part
	emit = func(t *tnode) part {
		keys := make([]byte, 0, len(t.kids))
		for k := range t.kids {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var ps []part
		for _, k := range keys {
			n := b.add(node{kind: nByte, b: k})
			rest := emit(t.kids[k])
			b.nodes[n].out = rest.start
			ps = append(ps, part{start: n, holes: rest.holes})
		}
		if t.end {
			ps = append(ps, b.empty())
		}
		return b.alt(ps...)
	}
	return emit(root)
}

// compile closes p with a match node and computes distances.
func (b *builder) compile(p part) (*Grammar, error) {
	m := b.add(node{kind: nMatch})
	b.patch(p, m)
	g := &Grammar{nodes: b.nodes, start: p.start}
	if err := g.computeDist(); err != nil {
		return nil, err
	}
	g.minBytes = int(g.nodes[g.start].dist)
	return g, nil
}

// computeDist finds, for every node, the fewest bytes to the match by
// relaxing until nothing changes (Bellman-Ford on a small graph with 0/1
// and free-min weights).
func (g *Grammar) computeDist() error {
	const inf = int32(1 << 30)
	for i := range g.nodes {
		g.nodes[i].dist = inf
	}
	for changed, rounds := true, 0; changed; rounds++ {
		if rounds > len(g.nodes)+1 {
			return fmt.Errorf("grammar: distances do not settle")
		}
		changed = false
		for i := range g.nodes {
			n := &g.nodes[i]
			d := inf
			switch n.kind {
			case nMatch:
				d = 0
			case nByte:
				if n.out >= 0 && g.nodes[n.out].dist < inf {
					d = 1 + g.nodes[n.out].dist
				}
			case nFree:
				if n.out >= 0 && g.nodes[n.out].dist < inf {
					d = n.min + g.nodes[n.out].dist
				}
			case nSplit:
				for _, a := range n.alts {
					if a >= 0 && g.nodes[a].dist < d {
						d = g.nodes[a].dist
					}
				}
			}
			if d < n.dist {
				n.dist = d
				changed = true
			}
		}
	}
	if g.nodes[g.start].dist >= inf {
		return fmt.Errorf("grammar: no complete output exists")
	}
	return nil
}

// MinBytes is the length of the shortest complete output.
func (g *Grammar) MinBytes() int { return g.minBytes }

// closure adds t and every thread reachable from it by epsilon moves.
func (g *Grammar) closure(set []thread, t thread) []thread {
	if t.node < 0 || slices.Contains(set, t) {
		return set
	}
	n := &g.nodes[t.node]
	switch n.kind {
	case nSplit:
		set = append(set, t)
		for _, a := range n.alts {
			set = g.closure(set, thread{node: a})
		}
	case nFree:
		set = append(set, t)
		if t.n >= n.min {
			set = g.closure(set, thread{node: n.out})
		}
	default:
		set = append(set, t)
	}
	return set
}

// initial is the start state.
func (g *Grammar) initial() []thread {
	return g.closure(nil, thread{node: g.start})
}

// step advances a state by one byte into dst (reused); an empty result means
// the byte is not allowed.
func (g *Grammar) step(dst, src []thread, c byte) []thread {
	dst = dst[:0]
	for _, t := range src {
		n := &g.nodes[t.node]
		switch n.kind {
		case nByte:
			if n.b == c {
				dst = g.closure(dst, thread{node: n.out})
			}
		case nFree:
			if t.n < n.max && isTextByte(c) {
				dst = g.closure(dst, thread{node: t.node, n: t.n + 1})
			}
		}
	}
	return dst
}

// dist is the fewest bytes from a state to the end.
func (g *Grammar) dist(s []thread) int {
	best := int32(1 << 30)
	for _, t := range s {
		n := &g.nodes[t.node]
		d := n.dist
		if n.kind == nFree {
			d = max(0, n.min-t.n) + g.nodes[n.out].dist
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
			if seen && n.b != c {
				return 0, false
			}
			c, seen = n.b, true
		}
	}
	return c, seen
}

// Match reports whether the grammar accepts out exactly (for tests and
// validation of outputs).
func (g *Grammar) Match(out []byte) bool {
	s := g.initial()
	var tmp []thread
	for _, c := range out {
		tmp = g.step(tmp, s, c)
		if len(tmp) == 0 {
			return false
		}
		s, tmp = tmp, s
	}
	ok, _ := g.accepting(s)
	return ok
}
