package nextaction_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nextact/nextact/nextaction"
)

// FuzzCompileSchema: any schema text compiles, within its limits and
// quickly, or is refused with an error; a compiled grammar decodes under
// random logits, within the shortest output's budget, to JSON it matches.
// Seed corpus: testdata/fuzz/FuzzCompileSchema.
func FuzzCompileSchema(f *testing.F) {
	for _, s := range []string{
		`{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"array","maxItems":3,"items":{"type":"string","maxLength":4}}},"required":["a"]}`,
		`{"enum":["x","xy",1,2.5,null,true,{"k":[1]}]}`,
		`{"type":["number","null"]}`,
		`{"const":"fixed"}`,
		`{"type":"array","minItems":2,"maxItems":2,"items":{"type":"boolean"}}`,
		`true`,
		`{"$defs":{"n":{"type":"object","properties":{"v":{"type":"integer","minimum":-5,"maximum":70},"next":{"anyOf":[{"$ref":"#/$defs/n"},{"type":"null"}]}},"required":["v"]}},"$ref":"#/$defs/n"}`,
		`{"type":"string","pattern":"^(a|b[c-e]{1,3})+\\.\\d*$"}`,
		`{"type":"object","properties":{"d":{"type":"string","format":"date-time"},"u":{"type":"string","format":"uuid"}},"additionalProperties":{"type":"number","exclusiveMaximum":3}}`,
		`{"oneOf":[{"type":"string","maxLength":3},{"type":"array","prefixItems":[{"const":"é"}],"items":false}]}`,
		`{"type":"array","maxItems":4096,"items":{"type":"array","maxItems":4096,"items":{"type":"integer"}}}`,
	} {
		f.Add([]byte(s))
	}
	v := testVocab(f)
	f.Fuzz(func(t *testing.T, schema []byte) {
		l := nextaction.DefaultSchemaLimits
		l.MaxNodes = 20_000 // keep each input cheap; the bound is what is tested
		start := time.Now()
		g, err := nextaction.CompileSchema(schema, l)
		// A generous bound: it catches a blow-up (quadratic work on a 64
		// KiB schema takes minutes), not a slow machine.
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("compiling %d bytes took %s", len(schema), d)
		}
		if err != nil {
			return
		}
		if g.Nodes() > l.MaxNodes+1 {
			t.Fatalf("%d nodes, over the limit of %d", g.Nodes(), l.MaxNodes)
		}
		if g.MinBytes() > 2000 {
			return // decoding it is slow, not wrong
		}
		c := nextaction.NewByteConstraint(v, g)
		budget := c.MinTokens() + 5
		rng := rand.New(rand.NewPCG(uint64(len(schema)), 1))
		decodeWithin(t, v, c, rng, budget)
		// Done, or cut by the budget (the scheduler's FinishLength): the
		// output is complete either way.
		out := c.Output()
		if !json.Valid(out) || !g.Match(out) {
			t.Fatalf("schema %s: output %q does not parse or match", schema, out)
		}
	})
}

// decodeWithin runs c with random logits until it is done or maxTokens
// are used, as the scheduler does.
func decodeWithin(t *testing.T, v *nextaction.Vocab, c *nextaction.ByteConstraint, rng *rand.Rand, maxTokens int) {
	used := len(c.Forced())
	logits := make([]float32, v.Size())
	for !c.Done() && used < maxTokens {
		for i := range logits {
			logits[i] = float32(rng.NormFloat64())
		}
		if err := c.Mask(logits, maxTokens-used); err != nil {
			t.Fatalf("mask after %d tokens of %d: %v", used, maxTokens, err)
		}
		best := 0
		for i, l := range logits {
			if l > logits[best] {
				best = i
			}
		}
		if math.IsInf(float64(logits[best]), -1) {
			t.Fatal("mask allowed nothing")
		}
		if _, err := c.Accept(int32(best)); err != nil {
			t.Fatal(err)
		}
		used += 1 + len(c.Forced())
	}
	if used > maxTokens {
		t.Fatalf("%d tokens over a budget of %d", used, maxTokens)
	}
}

// FuzzParsePage: any document parses without panicking into names that
// can be written verbatim in JSON, and the action grammar over them
// compiles and accepts terminate.
func FuzzParsePage(f *testing.F) {
	for _, s := range []string{
		`<div><input name="search_input"/><a name="shirt.view_product">Shirt</a><button name="cart.buy_now">Buy</button></div>`,
		`<textarea name="notes"></textarea><select name="size"><option>M</option></select>`,
		`<a name="x\"y">bad</a><a name="">empty</a><a name="` + "\x01" + `">ctl</a>`,
		`<<<>>>`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		p, err := nextaction.ParsePage(doc)
		if err != nil {
			return
		}
		names := append(p.Clickables(), p.Inputs()...)
		for _, n := range names {
			if !nextaction.SafeName(n) {
				t.Fatalf("unsafe name %q kept", n)
			}
		}
		g, err := nextaction.ActionGrammar(p, nextaction.FormatFinetuned, nextaction.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if !g.Match([]byte(`{"type":"terminate"}`)) {
			t.Fatal("terminate refused")
		}
		for _, n := range p.Clickables() {
			if !g.Match([]byte(`{"type":"click","name":"` + n + `"}`)) {
				t.Fatalf("click on %q refused", n)
			}
		}
	})
}
