package nextaction_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/nextactiontest"
)

// bigVocab imitates a 128k byte-level vocabulary: the 256 bytes, then
// random pieces of 2 to 8 bytes (mostly text, some with quotes and non-ASCII
// bytes), then control tokens.
func bigVocab(b *testing.B) *nextaction.Vocab {
	rng := rand.New(rand.NewPCG(3, 3))
	var pieces []string
	for c := range 256 {
		pieces = append(pieces, string([]byte{byte(c)}))
	}
	const alphabet = ` abcdefghijklmnopqrstuvwxyz._"{}:,ABCDEFGHIJ0123456789`
	seen := map[string]bool{}
	for len(pieces) < 128000 {
		n := 2 + rng.IntN(7)
		p := make([]byte, n)
		for i := range p {
			p[i] = alphabet[rng.IntN(len(alphabet))]
			if rng.IntN(50) == 0 {
				p[i] = 0xC3
			}
		}
		if !seen[string(p)] {
			seen[string(p)] = true
			pieces = append(pieces, string(p))
		}
	}
	special := make([]bool, len(pieces)+256)
	for i := range 256 {
		pieces = append(pieces, fmt.Sprintf("<|reserved_%d|>", i))
		special[len(pieces)-1] = true
	}
	v, err := nextaction.NewVocab(pieces, special, []int32{int32(len(pieces) - 1)})
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkMask is the cost of one constrained token at a 128k vocabulary:
// inside the rationale (free text: one pass over the vocabulary) and at the
// element name (a walk of the vocabulary trie).
//
//	go test -run '^$' -bench Mask ./nextaction
func BenchmarkMask(b *testing.B) {
	v := bigVocab(b)
	rng := rand.New(rand.NewPCG(1, 1))
	html, _, _, _ := nextactiontest.RandomPage(rng, nextactiontest.PageOptions{MaxClickables: 40, MaxInputs: 4})
	page, _ := nextaction.ParsePage(html)
	g, err := nextaction.ActionGrammar(page, nextaction.FormatPrompted, nextaction.DefaultLimits)
	if err != nil {
		b.Fatal(err)
	}
	logits := make([]float32, v.Size())
	b.Run("free-text", func(b *testing.B) {
		c := nextaction.NewByteConstraint(v, g)
		for range b.N {
			if err := c.Mask(logits, 500); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("element-name", func(b *testing.B) {
		c := nextaction.NewByteConstraint(v, g)
		// Close the rationale and pick click: the next token is a name.
		for _, s := range []string{`"`, `c`} {
			if _, err := c.Accept(int32(s[0])); err != nil {
				b.Fatal(err)
			}
			c.Forced()
		}
		for range b.N {
			if err := c.Mask(logits, 500); err != nil {
				b.Fatal(err)
			}
		}
	})
}
