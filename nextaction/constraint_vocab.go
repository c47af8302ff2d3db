package nextaction

import "errors"

// Vocab indexes a model's vocabulary for constrained decoding: a trie over
// the token pieces, and for each mode of free text which tokens are all
// text. Build it once per model; it is immutable and goroutine-safe.
type Vocab struct {
	pieces  []string
	special []bool
	eog     []int32
	// text indexes the tokens for free text, by textMode.
	text [2]textIndex
	trie []trieNode
	// dups holds, by trie node, further tokens with the same piece.
	dups map[int32][]int32
}

// textIndex classifies every token for free text of one mode entered at a
// character boundary, so that a mask inside free text is one pass over
// arrays instead of a walk of the grammar per token.
type textIndex struct {
	// runLen is, for a token that is all text and ends at a character
	// boundary, the characters it writes; else 0.
	runLen []int32
	// unsafeBy lists ordinary tokens that leave text at a character
	// boundary (a '"', a control byte...), grouped by that first non-text
	// byte: inside free text only those whose first non-text byte can end
	// the text are worth simulating. prefixLen and prefixChars are the
	// bytes and characters of text before it.
	unsafeBy               [256][]int32
	prefixLen, prefixChars []int32
	// partial lists the tokens that are all text but end inside a
	// character (part of a UTF-8 sequence or of an escape); partialChars
	// counts the character under way, partialNeed is the fewest bytes
	// that finish it.
	partial      []int32
	partialChars []int32
	partialNeed  []uint8
	// notText lists every token with runLen 0 (special, empty, partial or
	// leaving text); maxText is the most characters of an all-text token.
	notText []int32
	maxText int32
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
	v := &Vocab{pieces: pieces, special: special, eog: eog}
	v.trie = []trieNode{{tok: -1, child: -1, next: -1}}
	for m := range v.text {
		v.text[m].index(textMode(m), pieces, special)
	}
	for id, p := range pieces {
		if !special[id] && p != "" {
			v.insert(p, int32(id))
		}
	}
	return v, nil
}

// index classifies every token for free text of mode m.
func (x *textIndex) index(m textMode, pieces []string, special []bool) {
	n := len(pieces)
	x.runLen, x.prefixLen, x.prefixChars = make([]int32, n), make([]int32, n), make([]int32, n)
	for id, p := range pieces {
		if special[id] || p == "" {
			x.notText = append(x.notText, int32(id))
			continue
		}
		r := runText(m, p)
		switch {
		case int(r.n) == len(p) && r.s == strInit:
			x.runLen[id] = r.chars
			x.maxText = max(x.maxText, r.chars)
			continue
		case int(r.n) == len(p):
			x.partial = append(x.partial, int32(id))
			x.partialChars = append(x.partialChars, r.chars)
			x.partialNeed = append(x.partialNeed, strNeed[r.s])
		case r.s == strInit:
			x.unsafeBy[p[r.n]] = append(x.unsafeBy[p[r.n]], int32(id))
			x.prefixLen[id], x.prefixChars[id] = r.n, r.chars
		}
		x.notText = append(x.notText, int32(id))
	}
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
