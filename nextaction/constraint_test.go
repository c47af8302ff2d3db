package nextaction_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/nextactiontest"
)

// testVocab is a byte-level vocabulary: the 256 bytes, some merges that
// cross JSON syntax ("\",\"", "name", "_") or UTF-8 characters and JSON
// escapes ("é", a partial "日", "\u00"), and two control tokens (one
// of them end-of-generation).
func testVocab(t testing.TB) *nextaction.Vocab {
	t.Helper()
	var pieces []string
	for b := range 256 {
		pieces = append(pieces, string([]byte{byte(b)}))
	}
	pieces = append(pieces, `{"`, `":"`, `","`, `"}`, `name`, `type`, `click`, `ation`, `_`, `.`, ` the`, `."`, `"}}`, `ing`, `product`, `a"`,
		// UTF-8 and JSON escapes: whole characters, a character split
		// across tokens, an escape, an escape cut short.
		"é", "日本", "\xe6\x97", "é\"", `\"`, `\n`, `\u00`, "🛒", `<|eot_id|>`, `<|start_header_id|>`)
	special := make([]bool, len(pieces))
	special[len(pieces)-1], special[len(pieces)-2] = true, true
	v, err := nextaction.NewVocab(pieces, special, []int32{int32(len(pieces) - 2)})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// decode runs a constraint to the end with random logits (as a random model
// would), sampling the argmax of the masked logits. It returns the tokens
// taken (sampled plus forced) and whether the constraint said done.
func decode(t *testing.T, v *nextaction.Vocab, c interface {
	Mask([]float32, int) error
	Accept(int32) (bool, error)
	Forced() []int32
	Done() bool
	Allows(int32, int) bool
}, rng *rand.Rand, maxTokens int) int {
	t.Helper()
	used := len(c.Forced())
	if c.Done() {
		return used
	}
	logits := make([]float32, v.Size())
	eog := int32(v.Size() - 2) // <|eot_id|>
	for used < maxTokens {
		for i := range logits {
			logits[i] = float32(rng.NormFloat64())
		}
		if err := c.Mask(logits, maxTokens-used); err != nil {
			t.Fatalf("mask after %d tokens (budget %d): %v", used, maxTokens, err)
		}
		// Allows, the scheduler's cheap check, must agree with Mask.
		for tok, l := range logits {
			kept := !math.IsInf(float64(l), -1)
			if allows := c.Allows(int32(tok), maxTokens-used); allows != kept {
				t.Fatalf("token %d (%q): Allows %v, Mask keeps %v, after %d tokens of %d", tok, v.Piece(int32(tok)), allows, kept, used, maxTokens)
			}
		}
		best := -1
		for i, l := range logits {
			if !math.IsInf(float64(l), -1) && (best < 0 || l > logits[best]) {
				best = i
			}
		}
		if best < 0 {
			t.Fatal("mask allowed nothing")
		}
		used++
		done, err := c.Accept(int32(best))
		if err != nil {
			t.Fatal(err)
		}
		used += len(c.Forced())
		if done {
			return used
		}
	}
	// Out of tokens where the output may end (a top-level number that
	// could take more digits): complete, though not final.
	if c.Allows(eog, 1) {
		return used
	}
	t.Fatalf("no complete output within %d tokens", maxTokens)
	return 0
}

// Every answer parses, has a legal type and a name from this page, and fits
// the token budget, for random pages, random "models" and tight budgets.
func TestActionConstraintAlwaysValid(t *testing.T) {
	t.Parallel()
	v := testVocab(t)
	rng := rand.New(rand.NewPCG(1, 2))
	cache := nextaction.NewGrammarCache(0)
	limits := nextaction.Limits{MaxRationaleBytes: 40, MaxTextBytes: 12}
	for i := range 300 {
		html, _, _, _ := nextactiontest.RandomPage(rng, nextactiontest.PageOptions{MaxClickables: 12, MaxInputs: 3})
		page, err := nextaction.ParsePage(html)
		if err != nil {
			t.Fatal(err)
		}
		f := nextaction.FormatPrompted
		if i%2 == 1 {
			f = nextaction.FormatFinetuned
		}
		g, err := cache.Action(page, f, limits)
		if err != nil {
			t.Fatal(err)
		}
		c := nextaction.NewByteConstraint(v, g)
		budget := c.MinTokens() + rng.IntN(30)
		used := decode(t, v, c, rng, budget)
		if used > budget {
			t.Fatalf("page %d: %d tokens over a budget of %d", i, used, budget)
		}
		out := c.Output()
		var a nextaction.Action
		if f == nextaction.FormatPrompted {
			_, a, err = nextaction.ParsePromptedOutput(out)
		} else {
			a, err = nextaction.ParseAction(out)
		}
		if err != nil {
			t.Fatalf("page %d: output %q does not parse: %v", i, out, err)
		}
		if err := a.Validate(page, limits.MaxTextBytes); err != nil {
			t.Fatalf("page %d: %q: %v", i, out, err)
		}
		if !g.Match(out) {
			t.Fatalf("grammar rejects its own output %q", out)
		}
	}
	if hits, misses := cache.Stats(); hits != 0 || misses != 300 {
		t.Logf("cache: %d hits, %d misses", hits, misses)
	}
}

func TestGrammarCacheHitsOnSameElementSet(t *testing.T) {
	t.Parallel()
	cache := nextaction.NewGrammarCache(0)
	a, _ := nextaction.ParsePage(`<button name="buy_now">Buy</button><input name="search_input"/>`)
	b, _ := nextaction.ParsePage(`<div><input name="search_input" placeholder="x"/><a name="buy_now">other label</a></div>`)
	c, _ := nextaction.ParsePage(`<button name="buy_later">Buy</button>`)
	l := nextaction.DefaultLimits
	g1, _ := cache.Action(a, nextaction.FormatPrompted, l)
	g2, _ := cache.Action(b, nextaction.FormatPrompted, l)
	if g1 != g2 {
		t.Fatal("same element set compiled twice")
	}
	if _, err := cache.Action(c, nextaction.FormatPrompted, l); err != nil {
		t.Fatal(err)
	}
	if hits, misses := cache.Stats(); hits != 1 || misses != 2 {
		t.Fatalf("hits %d misses %d, want 1 and 2", hits, misses)
	}
}

func TestActionGrammarMatches(t *testing.T) {
	t.Parallel()
	page, _ := nextaction.ParsePage(`<a name="shirt.view">x</a><a name="shirt.view_all">y</a><input name="q"/>`)
	g, err := nextaction.ActionGrammar(page, nextaction.FormatFinetuned, nextaction.Limits{MaxRationaleBytes: 10, MaxTextBytes: 5})
	if err != nil {
		t.Fatal(err)
	}
	for out, want := range map[string]bool{
		`{"type":"click","name":"shirt.view"}`:                  true,
		`{"type":"click","name":"shirt.view_all"}`:              true,
		`{"type":"click","name":"shirt.vie"}`:                   false,
		`{"type":"click","name":"q"}`:                           false,
		`{"type":"type_and_submit","name":"q","text":"socks"}`:  true,
		`{"type":"type_and_submit","name":"q","text":"socks!"}`: false,
		`{"type":"type_and_submit","name":"q","text":""}`:       false,
		`{"type":"terminate"}`:                                  true,
		`{"type":"terminate"} `:                                 false,
	} {
		if got := g.Match([]byte(out)); got != want {
			t.Errorf("Match(%s) = %v, want %v", out, got, want)
		}
	}
}

// Control tokens never appear inside the output, however likely.
func TestConstraintMasksControlTokens(t *testing.T) {
	t.Parallel()
	v := testVocab(t)
	page, _ := nextaction.ParsePage(`<a name="x">x</a>`)
	g, _ := nextaction.ActionGrammar(page, nextaction.FormatPrompted, nextaction.DefaultLimits)
	c := nextaction.NewByteConstraint(v, g)
	c.Forced()
	logits := make([]float32, v.Size())
	logits[v.Size()-1], logits[v.Size()-2] = 100, 100
	if err := c.Mask(logits, 500); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{v.Size() - 1, v.Size() - 2} {
		if !math.IsInf(float64(logits[i]), -1) {
			t.Fatalf("control token %d allowed in free text", i)
		}
	}
	if !strings.HasPrefix(string(c.Output()), `{"rationale":"`) {
		t.Fatalf("forced prefix missing: %q", c.Output())
	}
}
