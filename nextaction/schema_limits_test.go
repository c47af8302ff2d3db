package nextaction

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// Schemas from the hardening issue, each refused with the limit it breaks
// before any large allocation: on c74a939 the first one ran out of memory
// in builder.add, the long const took 20-35 s, the big enum 5 s and 108 MB.
func TestSchemaLimitsRefuse(t *testing.T) {
	t.Parallel()
	ints := make([]string, 100_000)
	for i := range ints {
		ints[i] = fmt.Sprint(i * 7)
	}
	big := SchemaLimits{MaxBytes: 4 << 20} // only the limit under test
	cases := []struct {
		name   string
		schema string
		l      SchemaLimits
		limit  string
	}{
		{"nested 4096x4096 arrays", `{"type":"array","maxItems":4096,"items":{"type":"array","maxItems":4096,"items":{"type":"integer"}}}`, DefaultSchemaLimits, LimitGrammarNodes},
		{"256x256 arrays of integers", `{"type":"array","maxItems":256,"items":{"type":"array","maxItems":256,"items":{"type":"integer"}}}`, DefaultSchemaLimits, LimitGrammarNodes},
		{"100k-byte const", `{"const":"` + strings.Repeat("a", 100_000) + `"}`, DefaultSchemaLimits, LimitSchemaBytes},
		{"100k-byte const, big schemas allowed", `{"const":"` + strings.Repeat("a", 100_000) + `"}`, big, LimitLiteralBytes},
		{"enum of 100k integers", `{"enum":[` + strings.Join(ints, ",") + `]}`, big, LimitEnumValues},
		{"regex repetition of a repetition", `{"type":"string","pattern":"((a{1000}){1000}){1000}"}`, DefaultSchemaLimits, LimitGrammarNodes},
		{"refs doubling at each level", `{"$defs":{` + doublingRefs(15) + `},"$ref":"#/$defs/d0"}`, DefaultSchemaLimits, LimitGrammarNodes},
		{"deep nesting", strings.Repeat(`{"type":"array","items":`, 40) + `{"type":"null"}` + strings.Repeat("}", 40), DefaultSchemaLimits, LimitSchemaDepth},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompileSchema([]byte(tc.schema), tc.l)
			var le *LimitError
			if !errors.As(err, &le) || le.Limit != tc.limit {
				t.Fatalf("got %v, want a LimitError on %s", err, tc.limit)
			}
		})
	}
}

// doublingRefs defines d0..d(n-1), each an array of two of the next: 2^n
// expansions if nothing bounded them.
func doublingRefs(n int) string {
	var defs []string
	for i := range n {
		defs = append(defs, fmt.Sprintf(`"d%d":{"type":"array","minItems":2,"maxItems":2,"items":{"$ref":"#/$defs/d%d"}}`, i, i+1))
	}
	return strings.Join(defs, ",") + fmt.Sprintf(`,"d%d":{"type":"integer"}`, n)
}

// Right under the limits, schemas compile, and the estimate made before
// building never undercounts what is built.
func TestSchemaEstimateBoundsTheBuild(t *testing.T) {
	t.Parallel()
	schemas := []string{
		`true`,
		`{"type":"string","maxLength":12}`,
		`{"type":["number","null","boolean","integer"]}`,
		`{"type":"array","minItems":2,"maxItems":5,"items":{"type":"object","properties":{"a":{"type":"integer"},"b":{"enum":["x","xy",1,null,{"k":[1]}]}}}}`,
		`{"type":"object","properties":{"deep":{"type":"array","maxItems":3,"items":{"type":"array","maxItems":3,"items":{"const":"c"}}}},"required":["deep"],"additionalProperties":false}`,
		`{"type":"object"}`,
		`{"type":"object","additionalProperties":false}`,
		`{"type":"array"}`,
		`{"type":"array","maxItems":0}`,
		`{"enum":["` + strings.Repeat("b", 4000) + `"]}`,
		`{"type":"array","maxItems":40,"items":{"type":"array","maxItems":40,"items":{"type":"integer"}}}`,
		// The 64x64 (762 MB for ten before): a digit is one class
		// node, not a choice of ten.
		`{"type":"array","maxItems":64,"items":{"type":"array","maxItems":64,"items":{"type":"number"}}}`,
		`{"$defs":{"P":{"type":"object","properties":{"x":{"type":"integer","minimum":-3,"maximum":250},"y":{"anyOf":[{"type":"string","pattern":"^[a-z]{2,5}(-[0-9]+)?$"},{"type":"null"}]}}}},"type":"array","items":{"$ref":"#/$defs/P"}}`,
		`{"$defs":{"T":{"type":"object","properties":{"kids":{"type":"array","maxItems":2,"items":{"$ref":"#/$defs/T"}}},"required":["kids"]}},"$ref":"#/$defs/T"}`,
	}
	for _, s := range schemas {
		l := DefaultSchemaLimits
		g, err := CompileSchema([]byte(s), l)
		if err != nil {
			t.Fatalf("%.60s: %v", s, err)
		}
		root, err := parseJV([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		est, err := estimateSchema(root, l)
		if err != nil {
			t.Fatal(err)
		}
		if int64(g.Nodes()) > est+1 { // +1: the match node
			t.Errorf("%.60s: built %d nodes, estimated %d", s, g.Nodes(), est)
		}
		t.Logf("%.60s: %d nodes (estimated %d), %d KiB", s, g.Nodes(), est, g.Bytes()>>10)
	}
}

// Distances (the shortest completion from each node) agree with the
// relaxation the compiler used before, on random grammars.
func TestDistancesMatchRelaxation(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range 200 {
		s := randomSchema(rng, 3)
		g, err := SchemaGrammar([]byte(s))
		if err != nil {
			var le *LimitError
			if errors.As(err, &le) {
				continue
			}
			t.Fatalf("%s: %v", s, err)
		}
		want := relaxDist(g)
		for n := range g.nodes {
			if g.nodes[n].dist != want[n] {
				t.Fatalf("schema %d (%s): node %d dist %d, relaxation %d", i, s, n, g.nodes[n].dist, want[n])
			}
		}
	}
}

// The decoder's states deduplicate without quadratic scans: a state of
// 10,000 threads builds and steps (here an enum that shares no prefix
// structure, compiled as a trie: the old alternation of literals put all
// 10,000 in the start state).
func TestLargeStatesStayLinear(t *testing.T) {
	t.Parallel()
	b := &builder{}
	alts := make([]part, 10_000)
	for i := range alts {
		alts[i] = b.lit(fmt.Sprintf("%05d", i))
	}
	g, err := b.compile(b.alt(alts...))
	if err != nil {
		t.Fatal(err)
	}
	var ts tset
	s := g.initial(&ts)
	if len(s) != 10_000+1 {
		t.Fatalf("start state has %d threads", len(s))
	}
	naive := naiveClosure(g, nil, thread{node: g.start})
	if !sameThreads(s, naive) {
		t.Fatal("state differs from the naive closure")
	}
	next := g.step(&ts, nil, s, '0')
	if len(next) != 10_000 {
		t.Fatalf("after '0': %d threads", len(next))
	}
	if !g.Match([]byte("04321")) || g.Match([]byte("4321")) {
		t.Fatal("match")
	}
}

// The cache holds at most its byte bound, evicting the least recently
// used grammars, and does not keep a grammar larger than the bound.
func TestGrammarCacheBoundedByBytes(t *testing.T) {
	t.Parallel()
	one, err := SchemaGrammar([]byte(`{"type":"array","maxItems":40,"items":{"type":"integer"}}`))
	if err != nil {
		t.Fatal(err)
	}
	bound := 5*one.Bytes() + 1024
	c := NewGrammarCache(bound)
	for i := range 20 {
		s := fmt.Sprintf(`{"type":"array","maxItems":%d,"items":{"type":"integer"}}`, 40+i%3)
		s += strings.Repeat(" ", i) // distinct texts
		if _, err := c.Schema([]byte(s), DefaultSchemaLimits); err != nil {
			t.Fatal(err)
		}
		if n, b := c.Size(); b > bound || n > 5 {
			t.Fatalf("after %d schemas: %d grammars, %d bytes, bound %d", i+1, n, b, bound)
		}
	}
	huge := `{"type":"array","maxItems":1000,"items":{"type":"integer"}}`
	g, err := c.Schema([]byte(huge), DefaultSchemaLimits)
	if err != nil || g.Bytes() <= bound {
		t.Fatalf("huge grammar: %v, %d bytes", err, g.Bytes())
	}
	if _, b := c.Size(); b > bound {
		t.Fatalf("a grammar over the whole bound was kept: %d bytes", b)
	}
}

// relaxDist is the compiler's former distance computation (relax every
// node until nothing changes), kept as the oracle: quadratic on long
// literals, exact.
func relaxDist(g *Grammar) []int32 {
	d := make([]int32, len(g.nodes))
	for i := range d {
		d[i] = infDist
	}
	for changed := true; changed; {
		changed = false
		for i := range g.nodes {
			n := &g.nodes[i]
			v := infDist
			switch n.kind {
			case nMatch:
				v = 0
			case nByte:
				if n.out >= 0 && d[n.out] < infDist {
					v = addDist(1, d[n.out])
				}
			case nFree:
				if n.out >= 0 && d[n.out] < infDist {
					v = addDist(n.min, d[n.out])
				}
			case nSplit:
				for _, a := range n.alts {
					if a >= 0 {
						v = min(v, d[a])
					}
				}
			}
			if v < d[i] {
				d[i], changed = v, true
			}
		}
	}
	return d
}

// naiveClosure is the former recursive closure with a linear membership
// test, the oracle of the deduplicating one.
func naiveClosure(g *Grammar, set []thread, t thread) []thread {
	if t.node < 0 || slices.Contains(set, t) {
		return set
	}
	set = append(set, t)
	n := &g.nodes[t.node]
	switch n.kind {
	case nSplit:
		for _, a := range n.alts {
			set = naiveClosure(g, set, thread{node: a})
		}
	case nFree:
		if t.n >= n.min {
			set = naiveClosure(g, set, thread{node: n.out})
		}
	}
	return set
}

func sameThreads(a, b []thread) bool {
	cmp := func(x, y thread) int {
		if x.node != y.node {
			return int(x.node - y.node)
		}
		return int(x.n - y.n)
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, cmp)
	slices.SortFunc(b, cmp)
	return slices.Equal(a, b)
}

// randomSchema is a small random schema of the supported keywords.
func randomSchema(rng *rand.Rand, depth int) string {
	kinds := []string{"string", "integer", "number", "boolean", "null", "enum", "const"}
	if depth > 0 {
		kinds = append(kinds, "array", "object", "array", "object")
	}
	switch k := kinds[rng.IntN(len(kinds))]; k {
	case "string":
		return fmt.Sprintf(`{"type":"string","minLength":%d,"maxLength":%d}`, rng.IntN(3), 3+rng.IntN(10))
	case "enum":
		return `{"enum":["a","ab",12,true,null]}`
	case "const":
		return fmt.Sprintf(`{"const":"%s"}`, strings.Repeat("q", 1+rng.IntN(30)))
	case "array":
		lo := rng.IntN(3)
		return fmt.Sprintf(`{"type":"array","minItems":%d,"maxItems":%d,"items":%s}`, lo, lo+rng.IntN(4), randomSchema(rng, depth-1))
	case "object":
		var props []string
		for i := range 1 + rng.IntN(3) {
			props = append(props, fmt.Sprintf(`"p%d":%s`, i, randomSchema(rng, depth-1)))
		}
		return `{"type":"object","properties":{` + strings.Join(props, ",") + `}}`
	default:
		return fmt.Sprintf(`{"type":%q}`, k)
	}
}

// BenchmarkDistances compares the compiler's distance computation with the
// relaxation it replaced, on a long literal (a const of n bytes: the
// relaxation settles one node per pass there, so it is quadratic).
//
//	go test -run '^$' -bench Distances ./nextaction
func BenchmarkDistances(b *testing.B) {
	for _, n := range []int{4_000, 20_000} {
		g, err := CompileSchema([]byte(`{"const":"`+strings.Repeat("a", n)+`"}`), SchemaLimits{MaxBytes: 1 << 20, MaxLiteralBytes: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("dijkstra/%d", n), func(b *testing.B) {
			for range b.N {
				if err := g.computeDist(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("relaxation/%d", n), func(b *testing.B) {
			for range b.N {
				relaxDist(g)
			}
		})
	}
}

// CheckSchema refuses what compiling refuses, without building.
func TestCheckSchemaAgreesWithCompile(t *testing.T) {
	t.Parallel()
	g, err := NewGrammars(testVocabForCheck(t), NewGrammarCache(0), SchemaLimits{MaxNodes: 5000})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`{"type":"object","properties":{"a":{"type":"string","maxLength":10}}}`,
		`{"type":"array","items":{"type":"string","maxLength":1000},"maxItems":1000}`,
		`{"type":"object","if":{}}`,
		`{"$ref":"#/$defs/missing"}`,
		`[1`,
	} {
		_, compileErr := g.JSON([]byte(s))
		checkErr := g.CheckSchema([]byte(s))
		if (compileErr == nil) != (checkErr == nil) {
			t.Errorf("%s: compile %v, check %v", s, compileErr, checkErr)
		}
	}
	// The check builds no grammar: its cache is never asked.
	checkOnly, err := NewGrammars(testVocabForCheck(t), NewGrammarCache(0), SchemaLimits{MaxNodes: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkOnly.CheckSchema([]byte(`{"type":"object","properties":{"a":{"type":"string","maxLength":10}}}`)); err != nil {
		t.Fatal(err)
	}
	if hits, misses := checkOnly.Cache().Stats(); hits+misses != 0 {
		t.Errorf("CheckSchema went through the grammar cache: %d hits, %d misses", hits, misses)
	}
}

// testVocabForCheck is a byte vocabulary with one end-of-generation token.
func testVocabForCheck(t *testing.T) *Vocab {
	pieces := make([]string, 0, 257)
	for b := range 256 {
		pieces = append(pieces, string([]byte{byte(b)}))
	}
	pieces = append(pieces, "<eos>")
	special := make([]bool, len(pieces))
	special[256] = true
	v, err := NewVocab(pieces, special, []int32{256})
	if err != nil {
		t.Fatal(err)
	}
	return v
}
