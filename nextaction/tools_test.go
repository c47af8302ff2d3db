package nextaction_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/nextactiontest"
)

// JSONBlocks: random decodes within random budgets write 1 to n values,
// each valid against the schema, between the opening and closing texts,
// and the output may end after any closed block.
func TestJSONBlocksDecodeValidBlocks(t *testing.T) {
	t.Parallel()
	v := testVocab(t)
	g, err := nextaction.NewGrammars(v, nextaction.NewGrammarCache(0), nextaction.SchemaLimits{})
	if err != nil {
		t.Fatal(err)
	}
	schema := []byte(`{"type":"object","properties":{"name":{"enum":["a","bc"]},"arguments":{"type":"object","properties":{"x":{"type":"integer","minimum":0,"maximum":99}},"required":["x"]}},"required":["name","arguments"]}`)
	validate := nextactiontest.Validator(t, schema)
	const closeText, openText = "\n</tool_call>", "\n<tool_call>\n"
	rng := rand.New(rand.NewPCG(3, 4))
	counts := map[int]int{}
	for range 200 {
		c, err := g.JSONBlocks(schema, closeText, openText, 3)
		if err != nil {
			t.Fatal(err)
		}
		budget := c.MinTokens() + rng.IntN(150)
		if used := decode(t, v, c, rng, budget); used > budget {
			t.Fatalf("%d tokens over %d", used, budget)
		}
		out := string(c.Output())
		blocks := strings.Split(strings.TrimSuffix(out, closeText), closeText+openText)
		if len(blocks) < 1 || len(blocks) > 3 {
			t.Fatalf("%d blocks in %q", len(blocks), out)
		}
		for _, b := range blocks {
			if err := validate([]byte(b)); err != nil {
				t.Fatalf("block %q of %q: %v", b, out, err)
			}
		}
		counts[len(blocks)]++
	}
	if counts[1] == 0 || counts[2]+counts[3] == 0 {
		t.Errorf("block counts %v: want both one and several", counts)
	}
	big := []byte(`{"type":"array","maxItems":64,"items":{"type":"array","maxItems":64,"items":{"type":"number"}}}`)
	if _, err := g.JSONBlocks(big, "x", "y", 1); err != nil {
		t.Fatalf("one value: %v", err)
	}
	var le *nextaction.LimitError
	if _, err := g.JSONBlocks(big, "x", "y", 4); !errors.As(err, &le) {
		t.Errorf("4 values over the node limit together: got %v, want a limit error", err)
	}
}
