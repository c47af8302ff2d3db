package batching

import "math/bits"

// slotSet is a set of slot indexes below MaxSlots (which bounds
// Config.Slots, so a slotSet holds any slot).
type slotSet [MaxSlots / 64]uint64

func (s *slotSet) add(i int32) { s[i>>6] |= 1 << (i & 63) }
func (s *slotSet) del(i int32) { s[i>>6] &^= 1 << (i & 63) }
func (s *slotSet) empty() bool { return *s == slotSet{} }

// each calls f for every slot in s that is not in minus, lowest first.
func (s *slotSet) each(minus *slotSet, f func(int32)) {
	for w := range s {
		for b := s[w] &^ minus[w]; b != 0; b &= b - 1 {
			f(int32(w<<6 + bits.TrailingZeros64(b)))
		}
	}
}

// prefixIndex is a radix tree over token ids of what each slot's KV holds
// (or, for a running slot, will hold once its prompt is fed). A node's
// edge is a run of tokens; slots lists the slots whose sequence starts with
// every token from the root to the end of that edge, so the deepest node a
// prompt reaches tells which slots share how much of it. Sequences end on
// node boundaries (edges are split where needed). Loop goroutine only.
type prefixIndex struct {
	root radixNode
	seqs [][]int32 // per slot, the sequence indexed (nil: none)
}

type radixNode struct {
	edge     []int32
	children map[int32]*radixNode // by the first token of the child's edge
	slots    slotSet
}

func newPrefixIndex(slots int) *prefixIndex {
	return &prefixIndex{seqs: make([][]int32, slots)}
}

// set indexes slot as holding seq, replacing what it held. seq is copied;
// an empty one is the same as remove.
func (x *prefixIndex) set(slot int32, seq []int32) {
	x.remove(slot)
	if len(seq) == 0 {
		return
	}
	seq = append([]int32(nil), seq...)
	x.seqs[slot] = seq
	n := &x.root
	n.slots.add(slot)
	for rest := seq; len(rest) > 0; {
		c := n.children[rest[0]]
		if c == nil {
			if n.children == nil {
				n.children = map[int32]*radixNode{}
			}
			c = &radixNode{edge: rest}
			c.slots.add(slot)
			n.children[rest[0]] = c
			return
		}
		k := commonPrefix(c.edge, rest)
		if k < len(c.edge) {
			c = splitEdge(n, c, k)
		}
		c.slots.add(slot)
		n, rest = c, rest[k:]
	}
}

// splitEdge cuts child c of n after k tokens of its edge and returns the
// new node that holds the first k.
func splitEdge(n, c *radixNode, k int) *radixNode {
	head := &radixNode{edge: c.edge[:k:k], slots: c.slots, children: map[int32]*radixNode{}}
	c.edge = c.edge[k:]
	head.children[c.edge[0]] = c
	n.children[head.edge[0]] = head
	return head
}

// remove drops slot from the index; empty nodes go. A nil index (no
// prefix cache) holds nothing.
func (x *prefixIndex) remove(slot int32) {
	if x == nil || x.seqs[slot] == nil {
		return
	}
	seq := x.seqs[slot]
	x.seqs[slot] = nil
	n := &x.root
	n.slots.del(slot)
	for rest := seq; len(rest) > 0; {
		c := n.children[rest[0]]
		c.slots.del(slot)
		if c.slots.empty() {
			delete(n.children, rest[0])
			return
		}
		n, rest = c, rest[len(c.edge):]
	}
}

// match sets out[i] to the length of the longest common prefix of prompt
// and slot i's indexed sequence (0 for slots not indexed), walking the
// tree once: O(len of the match + slots).
func (x *prefixIndex) match(prompt []int32, out []int) {
	clear(out)
	n, depth := &x.root, 0
	for depth < len(prompt) {
		c := n.children[prompt[depth]]
		if c == nil {
			break
		}
		// Slots that end here or go another way share depth tokens.
		n.slots.each(&c.slots, func(i int32) { out[i] = depth })
		k := commonPrefix(c.edge, prompt[depth:])
		if k < len(c.edge) {
			c.slots.each(&slotSet{}, func(i int32) { out[i] = depth + k })
			return
		}
		n, depth = c, depth+k
	}
	n.slots.each(&slotSet{}, func(i int32) { out[i] = depth })
}
