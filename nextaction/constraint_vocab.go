package nextaction

import "errors"

// Vocab indexes a model's vocabulary for constrained decoding: a trie over
// the token pieces, and which tokens are all text bytes. Build it once per
// model; it is immutable and goroutine-safe.
type Vocab struct {
	pieces  []string
	special []bool
	eog     []int32
	// safeLen is the byte length of a token made only of text bytes, else 0.
	safeLen []int32
	// unsafeBy lists ordinary tokens with some non-text byte ('"', '\',
	// control bytes, non-ASCII), grouped by the first such byte: inside
	// free text only those whose first non-text byte can end the text are
	// worth simulating.
	unsafeBy [256][]int32
	// notText lists every token that is not all text bytes (special, empty
	// or unsafe); maxText is the longest all-text token.
	notText []int32
	maxText int32
	// textPrefix is, for a token in unsafeBy, how many text bytes precede
	// its first non-text byte.
	textPrefix []int32
	trie       []trieNode
	// dups holds, by trie node, further tokens with the same piece.
	dups map[int32][]int32
}

// trieNode is a vocabulary trie node in first-child/next-sibling form.
type trieNode struct {
	b     byte
	tok   int32 // token ending here, or -1
	child int32
	next  int32
}

// NewVocab indexes pieces (the raw bytes of each token). special marks
// control tokens (including end-of-generation ones): byte grammars never
// allow them. eog lists the end-of-generation tokens.
func NewVocab(pieces []string, special []bool, eog []int32) (*Vocab, error) {
	if len(pieces) == 0 || len(special) != len(pieces) {
		return nil, errors.New("vocab: pieces and special flags must be non-empty and the same length")
	}
	v := &Vocab{pieces: pieces, special: special, eog: eog, safeLen: make([]int32, len(pieces)), textPrefix: make([]int32, len(pieces))}
	v.trie = []trieNode{{tok: -1, child: -1, next: -1}}
	for id, p := range pieces {
		if special[id] || p == "" {
			continue
		}
		first := -1
		for i := 0; i < len(p) && first < 0; i++ {
			if !isTextByte(p[i]) {
				first = i
			}
		}
		if first < 0 {
			v.safeLen[id] = int32(len(p))
			v.maxText = max(v.maxText, int32(len(p)))
		} else {
			v.unsafeBy[p[first]] = append(v.unsafeBy[p[first]], int32(id))
			v.textPrefix[id] = int32(first)
		}
		v.insert(p, int32(id))
	}
	for id, l := range v.safeLen {
		if l == 0 {
			v.notText = append(v.notText, int32(id))
		}
	}
	return v, nil
}

func (v *Vocab) insert(p string, id int32) {
	cur := int32(0)
	for i := 0; i < len(p); i++ {
		cur = v.childOrAdd(cur, p[i])
	}
	if v.trie[cur].tok < 0 {
		v.trie[cur].tok = id
		return
	}
	if v.dups == nil {
		v.dups = map[int32][]int32{}
	}
	v.dups[cur] = append(v.dups[cur], id)
}

func (v *Vocab) childOrAdd(n int32, b byte) int32 {
	for c := v.trie[n].child; c >= 0; c = v.trie[c].next {
		if v.trie[c].b == b {
			return c
		}
	}
	v.trie = append(v.trie, trieNode{b: b, tok: -1, child: -1, next: v.trie[n].child})
	id := int32(len(v.trie) - 1)
	v.trie[n].child = id
	return id
}

// Size is the number of tokens.
func (v *Vocab) Size() int { return len(v.pieces) }

// Piece is a token's bytes.
func (v *Vocab) Piece(tok int32) string { return v.pieces[tok] }

// tokenizeGreedy splits s into tokens by repeated longest match over the
// trie. Every byte has a token in a byte-level vocabulary; ok is false when
// some byte has none.
func (v *Vocab) tokenizeGreedy(s string) (toks []int32, ok bool) {
	for i := 0; i < len(s); {
		best, bestLen := int32(-1), 0
		cur := int32(0)
		for j := i; j < len(s); j++ {
			next := int32(-1)
			for c := v.trie[cur].child; c >= 0; c = v.trie[c].next {
				if v.trie[c].b == s[j] {
					next = c
					break
				}
			}
			if next < 0 {
				break
			}
			cur = next
			if v.trie[cur].tok >= 0 {
				best, bestLen = v.trie[cur].tok, j-i+1
			}
		}
		if best < 0 {
			return nil, false
		}
		toks = append(toks, best)
		i += bestLen
	}
	return toks, true
}
