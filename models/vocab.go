package models

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type).
const (
	tokenNormal  int32 = 1
	tokenControl int32 = 3
)

// llama3Specials are the Llama-3 special tokens, written as control tokens
// after the normal ones, in this order.
var llama3Specials = []string{
	"<|begin_of_text|>",
	"<|end_of_text|>",
	"<|reserved_special_token_0|>",
	"<|reserved_special_token_1|>",
	"<|finetune_right_pad_id|>",
	"<|reserved_special_token_2|>",
	"<|start_header_id|>",
	"<|end_header_id|>",
	"<|eom_id|>",
	"<|eot_id|>",
	"<|python_tag|>",
}

// vocab is a byte-level BPE vocabulary in GPT-2's mapped alphabet, with
// what a GGUF file says about it.
type vocab struct {
	tokens []string
	types  []int32
	merges []string
	// pre is llama.cpp's pre-tokenizer name.
	pre string
	// Special token ids, -1 when absent.
	bos, eos, eot, eom int64
	addBOS             bool
	template           string
	// damp says which output rows get small logits in a generated model.
	damp func(row int) bool
	// first ids of the merge, filler and special tokens (built-in only).
	mergeStart, extraStart, specialStart int
}

// special returns the id of the Llama-3 special token text.
func (v *vocab) special(text string) uint32 {
	for i, s := range llama3Specials {
		if s == text {
			return uint32(v.specialStart + i)
		}
	}
	panic("models: unknown special token " + text)
}

// buildVocab lays out 256 byte tokens (token i is byte i), the merges
// learned on the built-in corpus, extra filler tokens and the Llama-3
// specials.
func buildVocab(merges, extra int) (*vocab, error) {
	byteToRune := bytesToUnicode()
	v := &vocab{}
	seen := make(map[string]bool)
	add := func(text string, typ int32) error {
		if seen[text] {
			return fmt.Errorf("duplicate token %q", text)
		}
		seen[text] = true
		v.tokens = append(v.tokens, text)
		v.types = append(v.types, typ)
		return nil
	}
	for _, r := range byteToRune {
		if err := add(string(r), tokenNormal); err != nil {
			return nil, err
		}
	}
	v.mergeStart = len(v.tokens)
	pairs, err := learnMerges(corpus, merges, byteToRune, seen)
	if err != nil {
		return nil, err
	}
	for _, p := range pairs {
		v.merges = append(v.merges, p[0]+" "+p[1])
		if err := add(p[0]+p[1], tokenNormal); err != nil {
			return nil, err
		}
	}
	v.extraStart = len(v.tokens)
	for i := range extra {
		if err := add(fmt.Sprintf("[[pad_%d]]", i), tokenNormal); err != nil {
			return nil, err
		}
	}
	v.specialStart = len(v.tokens)
	for _, s := range llama3Specials {
		if err := add(s, tokenControl); err != nil {
			return nil, err
		}
	}
	v.pre, v.template = "llama-bpe", llama3Template
	v.bos = int64(v.special("<|begin_of_text|>"))
	v.eos = int64(v.special("<|eot_id|>"))
	v.eot, v.eom = v.eos, int64(v.special("<|eom_id|>"))
	// Bytes that are not printable ASCII, filler and control tokens other
	// than <|eot_id|> get small logits, so greedy text is mostly readable
	// UTF-8 that ends at an end of turn.
	v.damp = func(row int) bool {
		if row < v.mergeStart {
			return row >= 0x7f || row < 0x20 && row != '\n'
		}
		return row >= v.extraStart && int64(row) != v.eot
	}
	return v, nil
}

// bytesToUnicode is GPT-2's bytes_to_unicode table: printable bytes map to
// themselves, the others to code points from 256 up, in byte order.
func bytesToUnicode() [256]rune {
	var m [256]rune
	next := rune(256)
	for b := range 256 {
		switch {
		case b >= '!' && b <= '~', b >= 0xA1 && b <= 0xAC, b >= 0xAE && b <= 0xFF:
			m[b] = rune(b)
		default:
			m[b] = next
			next++
		}
	}
	return m
}

type pair [2]string

// learnMerges learns n merges by plain greedy BPE over text: at each step
// the most frequent adjacent pair (ties broken by the pair's text) whose
// concatenation is not yet a token. known holds the existing tokens and is
// not changed.
func learnMerges(text string, n int, byteToRune [256]rune, known map[string]bool) ([]pair, error) {
	counts := make(map[string]int)
	for _, w := range pretokenize(text) {
		counts[w]++
	}
	type word struct {
		syms []string
		n    int
	}
	words := make([]word, 0, len(counts))
	for w, c := range counts {
		syms := make([]string, 0, len(w))
		for i := 0; i < len(w); i++ {
			syms = append(syms, string(byteToRune[w[i]]))
		}
		words = append(words, word{syms, c})
	}
	made := make(map[string]bool)
	var merges []pair
	for len(merges) < n {
		freq := make(map[pair]int)
		for _, w := range words {
			for i := 0; i+1 < len(w.syms); i++ {
				freq[pair{w.syms[i], w.syms[i+1]}] += w.n
			}
		}
		var best pair
		bestN := 0
		for p, c := range freq {
			if known[p[0]+p[1]] || made[p[0]+p[1]] {
				continue
			}
			if c > bestN || c == bestN && (p[0] < best[0] || p[0] == best[0] && p[1] < best[1]) {
				best, bestN = p, c
			}
		}
		if bestN == 0 {
			return nil, fmt.Errorf("the built-in corpus yields only %d merges, %d asked", len(merges), n)
		}
		merges = append(merges, best)
		joined := best[0] + best[1]
		made[joined] = true
		for wi := range words {
			syms := words[wi].syms
			out := syms[:0]
			for i := 0; i < len(syms); i++ {
				if i+1 < len(syms) && syms[i] == best[0] && syms[i+1] == best[1] {
					out = append(out, joined)
					i++
					continue
				}
				out = append(out, syms[i])
			}
			words[wi].syms = out
		}
	}
	return merges, nil
}

// pretokenize splits text like llama.cpp's llama-bpe pre-tokenizer regex:
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
func pretokenize(text string) []string {
	rs := []rune(text)
	var out []string
	for i := 0; i < len(rs); {
		j := pretokenEnd(rs, i)
		out = append(out, string(rs[i:j]))
		i = j
	}
	return out
}

func pretokenEnd(rs []rune, i int) int {
	isL, isN, isS := unicode.IsLetter, unicode.IsNumber, unicode.IsSpace
	isNL := func(r rune) bool { return r == '\r' || r == '\n' }
	isP := func(r rune) bool { return !isS(r) && !isL(r) && !isN(r) }
	if rs[i] == '\'' {
		rest := strings.ToLower(string(rs[i+1 : min(i+3, len(rs))]))
		for _, c := range []string{"re", "ve", "ll", "s", "t", "m", "d"} {
			if strings.HasPrefix(rest, c) {
				return i + 1 + utf8.RuneCountInString(c)
			}
		}
	}
	j := i
	if !isL(rs[j]) && !isN(rs[j]) && !isNL(rs[j]) {
		j++
	}
	if j < len(rs) && isL(rs[j]) {
		for j < len(rs) && isL(rs[j]) {
			j++
		}
		return j
	}
	if isN(rs[i]) {
		j = i
		for j < len(rs) && j-i < 3 && isN(rs[j]) {
			j++
		}
		return j
	}
	j = i
	if rs[j] == ' ' {
		j++
	}
	if j < len(rs) && isP(rs[j]) {
		for j < len(rs) && isP(rs[j]) {
			j++
		}
		for j < len(rs) && isNL(rs[j]) {
			j++
		}
		return j
	}
	// Whitespace: up to the run's last newline, else all but the space
	// that belongs to the next word.
	k := i
	lastNL := -1
	for k < len(rs) && isS(rs[k]) {
		if isNL(rs[k]) {
			lastNL = k
		}
		k++
	}
	switch {
	case lastNL >= 0:
		return lastNL + 1
	case k == len(rs) || k-i == 1:
		return max(k, i+1)
	default:
		return k - 1
	}
}
