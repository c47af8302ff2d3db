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
	// unsafe lists ordinary tokens with some non-text byte (quotes, braces
	// are text; '"', '\', control bytes and non-ASCII are not).
	unsafe []int32
	trie   []trieNode
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
	v := &Vocab{pieces: pieces, special: special, eog: eog, safeLen: make([]int32, len(pieces))}
	v.trie = []trieNode{{tok: -1, child: -1, next: -1}}
	for id, p := range pieces {
		if special[id] || p == "" {
			continue
		}
		safe := true
		for i := 0; i < len(p); i++ {
			safe = safe && isTextByte(p[i])
		}
		if safe {
			v.safeLen[id] = int32(len(p))
		} else {
			v.unsafe = append(v.unsafe, int32(id))
		}
		v.insert(p, int32(id))
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
	}
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
