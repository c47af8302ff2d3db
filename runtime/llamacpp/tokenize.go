package llamacpp

import "fmt"

// llama.cpp splits text at special-token texts before tokenizing the rest
// (llama_vocab::impl::tokenizer_st_partition), and its split walks a linked
// list from the start for every occurrence: quadratic in the occurrences
// in one call ("<|eot_id|>" x 100k took 38 s). Tokenize therefore cuts text
// with many occurrences into calls of at most chunkSpecials each, right
// after an occurrence: llama.cpp tokenizes the text between special tokens
// separately anyway, so the tokens are the same (the cut is never after a
// token that strips whitespace to its right, and special-token texts that
// overlap one another would be needed to tell the difference; the
// vocabularies nextact serves have none).

// chunkSpecials is the most special-token occurrences one llama.cpp
// tokenize call sees.
const chunkSpecials = 64

// Token attributes of llama.h (enum llama_token_attr).
const (
	attrUnknown     = 1 << 0
	attrControl     = 1 << 3
	attrUserDefined = 1 << 4
	attrRStrip      = 1 << 8
)

// specialTrie finds the special-token texts llama.cpp partitions on.
type specialTrie struct {
	nodes []specialNode
}

type specialNode struct {
	next map[byte]int32
	// end is set where a special text ends: whether it is only split out
	// when parsing specials (control, unknown), and whether it strips
	// whitespace to its right.
	end, onlyParsed, rstrip bool
}

func newSpecialTrie() *specialTrie { return &specialTrie{nodes: []specialNode{{}}} }

func (t *specialTrie) add(text string, attr int) {
	if text == "" {
		return
	}
	cur := int32(0)
	for i := 0; i < len(text); i++ {
		n := &t.nodes[cur]
		nxt, ok := n.next[text[i]]
		if !ok {
			if n.next == nil {
				n.next = map[byte]int32{}
			}
			nxt = int32(len(t.nodes))
			n.next[text[i]] = nxt
			t.nodes = append(t.nodes, specialNode{})
		}
		cur = nxt
	}
	n := &t.nodes[cur]
	n.end = true
	n.onlyParsed = n.onlyParsed || attr&(attrControl|attrUnknown) != 0 && attr&attrUserDefined == 0
	n.rstrip = n.rstrip || attr&attrRStrip != 0
}

// cuts returns where to cut text so that no piece holds more than
// chunkSpecials special-token occurrences (leftmost longest), or nil when
// text needs no cut. Linear in len(text) times the longest special text.
func (t *specialTrie) cuts(text string, parseSpecial bool) []int {
	var out []int
	count := 0
	for i := 0; i < len(text); {
		end, rstrip := -1, false
		cur := int32(0)
		for j := i; j < len(text); j++ {
			nxt, ok := t.nodes[cur].next[text[j]]
			if !ok {
				break
			}
			cur = nxt
			if n := &t.nodes[cur]; n.end && (parseSpecial || !n.onlyParsed) {
				end, rstrip = j+1, n.rstrip
			}
		}
		if end < 0 {
			i++
			continue
		}
		count++
		if count >= chunkSpecials && !rstrip && end < len(text) {
			out = append(out, end)
			count = 0
		}
		i = end
	}
	return out
}

// Tokenize converts text to tokens without adding BOS; parseSpecial turns
// control-token text into control tokens. Text with many special-token
// texts is tokenized in pieces (see chunkSpecials).
func (e *Engine) Tokenize(text string, parseSpecial bool) ([]int32, error) {
	if text == "" {
		return nil, nil
	}
	cuts := e.specials.cuts(text, parseSpecial)
	out := make([]int32, 0, len(text)/3+1)
	start := 0
	for _, end := range append(cuts, len(text)) {
		toks, err := e.model.Tokenize(text[start:end], false, parseSpecial)
		if err != nil {
			return nil, fmt.Errorf("tokenize: %w", err)
		}
		for _, t := range toks {
			out = append(out, int32(t))
		}
		start = end
	}
	return out, nil
}
