package nextaction_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/nextactiontest"
)

// Random decodes under a schema always validate against it (checked by a
// real JSON Schema validator), within a random token budget, and Mask and
// Allows agree at every step (decode checks that).
func checkSchemaDecodes(t *testing.T, v *nextaction.Vocab, schema []byte, rounds int, seed uint64) {
	t.Helper()
	g, err := nextaction.SchemaGrammar(schema)
	if err != nil {
		t.Fatal(err)
	}
	validate := nextactiontest.Validator(t, schema)
	rng := rand.New(rand.NewPCG(seed, 6))
	for range rounds {
		c := nextaction.NewByteConstraint(v, g)
		budget := c.MinTokens() + rng.IntN(80)
		if used := decode(t, v, c, rng, budget); used > budget {
			t.Fatalf("%d tokens over %d", used, budget)
		}
		if err := validate(c.Output()); err != nil {
			t.Fatalf("output %q does not validate: %v", c.Output(), err)
		}
	}
}

func TestSchemaOutputsAlwaysParseAndMatch(t *testing.T) {
	t.Parallel()
	v := testVocab(t)
	schema := `{"type":"object","properties":{
		"action":{"type":"string","enum":["click","terminate"]},
		"name":{"type":"string","maxLength":12},
		"qty":{"type":"integer"},
		"price":{"type":["number","null"]},
		"tags":{"type":"array","items":{"type":"string","maxLength":5},"minItems":1,"maxItems":3},
		"ok":{"type":"boolean"}},
		"required":["action","name","qty","tags","ok"],"additionalProperties":false}`
	checkSchemaDecodes(t, v, []byte(schema), 200, 5)
	obj, err := nextaction.JSONObjectGrammar()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 200 {
		oc := nextaction.NewByteConstraint(v, obj)
		budget := oc.MinTokens() + rng.IntN(80)
		decode(t, v, oc, rng, budget)
		var m map[string]any
		if err := json.Unmarshal(oc.Output(), &m); err != nil {
			t.Fatalf("json_object output %q (round %d): %v", oc.Output(), i, err)
		}
	}
}

// Every schema of the corpus compiles, and random decodes validate.
func TestSchemaCorpusDecodesValidate(t *testing.T) {
	t.Parallel()
	v := testVocab(t)
	for i, s := range nextactiontest.SchemaCorpus(t) {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			checkSchemaDecodes(t, v, s.JSON, 12, uint64(i))
		})
	}
}

// The constructs one by one: each schema's random outputs validate.
func TestSchemaConstructsValidate(t *testing.T) {
	t.Parallel()
	v := testVocab(t)
	for i, s := range []string{
		`{"type":"string"}`,
		`{"type":"string","minLength":3,"maxLength":6}`,
		`{"type":"string","pattern":"^(ab|c[d-f]{2,3})+x?$"}`,
		`{"type":"string","pattern":"a\\.b\\\\c\"d\\n[^a-z]\\w\\s\\S\\d{2}"}`,
		`{"type":"string","pattern":"^日本+é?$"}`,
		`{"type":"string","pattern":"^[a-z]{2,4}$","maxLength":4}`,
		`{"type":"string","pattern":"^[a-z]+$","minLength":1}`,
		`{"type":"string","format":"date-time"}`,
		`{"type":"string","format":"time"}`,
		`{"type":"string","format":"ipv4"}`,
		`{"type":"integer","minimum":-1234,"maximum":56789}`,
		`{"type":"integer","exclusiveMinimum":7,"exclusiveMaximum":9}`,
		`{"type":"number","minimum":-2.5,"maximum":3.5}`,
		`{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1.5}`,
		`{"type":"number","minimum":5}`,
		`{"type":"integer","maximum":-3}`,
		`{"enum":["a",1,2.5,null,true,{"k":["é"]},[1,"\""]]}`,
		`{"type":["string","null"],"enum":["x",null,3]}`,
		`{"anyOf":[{"type":"integer"},{"type":"array","maxItems":2,"items":{"type":"boolean"}}]}`,
		`{"oneOf":[{"type":"object","properties":{"k":{"const":1},"a":{"type":"string"}},"required":["k"]},{"type":"object","properties":{"k":{"const":2}},"required":["k"]}]}`,
		`{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"boolean"}},"required":["b"]}`,
		`{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"minProperties":2}`,
		`{"type":"object","properties":{"a\"b":{"const":"q"},"é":{"type":"null"}}}`,
		`{"type":"object","additionalProperties":{"type":"integer"},"minProperties":1,"maxProperties":3}`,
		`{"type":"array","prefixItems":[{"type":"integer"},{"type":"string"}],"items":false,"minItems":1}`,
		`{"type":"array","items":{"type":"integer"},"uniqueItems":true}`,
		`{"$defs":{"n":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/n"},{"type":"null"}]}},"required":["v","next"]}},"$ref":"#/$defs/n"}`,
		`{"type":"array","maxItems":3,"items":{"$ref":"#"}}`,
		`{"allOf":[{"type":"object","properties":{"x":{"type":"integer","minimum":0,"maximum":9}},"required":["x"]}]}`,
		`true`,
		`{}`,
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			checkSchemaDecodes(t, v, []byte(s), 40, uint64(100+i))
		})
	}
}

func TestSchemaUnsupportedFeaturesAreNamed(t *testing.T) {
	t.Parallel()
	for schema, feature := range map[string]string{
		`{"type":"object","properties":{"a":{"$ref":"#/x"}}}`:           `$ref "#/x" to nothing`,
		`{"$ref":"other.json#/a"}`:                                      `outside this schema`,
		`{"type":"string","pattern":"(?=a)b"}`:                          "lookaround",
		`{"type":"string","pattern":"(a)\\1"}`:                          "backreference",
		`{"type":"string","pattern":"\\bx"}`:                            "word boundary",
		`{"type":"string","pattern":"a{2,1}"}`:                          "repetition",
		`{"type":"string","pattern":"[a-z]+","maxLength":5}`:            "minLength/maxLength beside a pattern",
		`{"type":"string","format":"hostname"}`:                         "format",
		`{"type":"number","multipleOf":2}`:                              "multipleOf",
		`{"not":{"type":"string"}}`:                                     "not",
		`{"oneOf":[{"type":"string"},{"type":"string","maxLength":2}]}`: "oneOf whose branches may overlap",
		`{"oneOf":[{"const":1},{"const":1.0}]}`:                         "oneOf whose branches may overlap",
		`{"type":"string","pattern":"^a?$","minLength":1}`:              "minLength/maxLength beside a pattern",
		`{"type":"object","properties":{"a":{}},"required":["b"]}`:      "required property",
		`{"$defs":{"r":{"type":"object","properties":{"x":{"$ref":"#/$defs/r"}},"required":["x"]}},"$ref":"#/$defs/r"}`: "recursive $ref",
		`{"type":"object","properties":{"a":{}},"if":{}}`:                                                               "if",
		`{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":0.5}`:                                                 "bounds that hold no integer",
	} {
		_, err := nextaction.SchemaGrammar([]byte(schema))
		var ue *nextaction.UnsupportedError
		if !errors.As(err, &ue) || !strings.Contains(ue.Feature, feature) {
			t.Errorf("%s: got %v, want unsupported %q", schema, err, feature)
		}
	}
	if _, err := nextaction.SchemaGrammar([]byte(`{"type":`)); err == nil {
		t.Error("malformed schema accepted")
	}
}

// A character above U+FFFF counts 2 toward maxLength (JavaScript's length,
// which Zod checks) and comes only once minLength is met, so strings keep
// both bounds counted either way (code points, UTF-16 units). Zod refused
// a 201-unit rationale under max(200) before.
func TestSchemaStringLengthsHoldInUTF16(t *testing.T) {
	t.Parallel()
	v := testVocab(t)
	g, err := nextaction.SchemaGrammar([]byte(`{"type":"string","minLength":1,"maxLength":4}`))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(11, 12))
	astral := 0
	for range 400 {
		c := nextaction.NewByteConstraint(v, g)
		decode(t, v, c, rng, c.MinTokens()+rng.IntN(12))
		var s string
		if err := json.Unmarshal(c.Output(), &s); err != nil {
			t.Fatalf("%q: %v", c.Output(), err)
		}
		points, units := 0, 0
		for _, r := range s {
			points++
			units++
			if r > 0xffff {
				units++
				astral++
			}
		}
		if points < 1 || units > 4 {
			t.Fatalf("%q: %d code points, %d UTF-16 units, want 1 and at most 4", s, points, units)
		}
	}
	if astral == 0 {
		t.Fatal("no character above U+FFFF was drawn: the test checks nothing")
	}
}

// randomVocab is a byte-level vocabulary of n tokens: the 256 bytes, then
// random pieces cut from text mixing ASCII, JSON syntax, escapes and
// multi-byte UTF-8 at arbitrary byte offsets (so many pieces start or end
// inside a character or an escape), then two control tokens.
func randomVocab(t testing.TB, n int, seed uint64) *nextaction.Vocab {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	parts := []string{"a", "b", "Z", "0", "7", " ", "_", "-", ".", ":", ",", `"`, `\`, `\"`, `\\`, `\n`, `\u00e9`, `\ud83d`, "{", "}", "[", "]", "é", "日本", "🛒", "\x7f", "\x01", "null", "true", "1e5", "-0."}
	var pieces []string
	for b := range 256 {
		pieces = append(pieces, string([]byte{byte(b)}))
	}
	seen := map[string]bool{}
	for len(pieces) < n-2 {
		var sb strings.Builder
		for range 1 + rng.IntN(4) {
			sb.WriteString(parts[rng.IntN(len(parts))])
		}
		s := sb.String()
		lo := rng.IntN(len(s))
		hi := lo + 1 + rng.IntN(len(s)-lo)
		if p := s[lo:hi]; len(p) > 1 && !seen[p] {
			seen[p] = true
			pieces = append(pieces, p)
		}
	}
	pieces = append(pieces, "<|eot_id|>", "<|start_header_id|>")
	special := make([]bool, len(pieces))
	special[len(pieces)-1], special[len(pieces)-2] = true, true
	v, err := nextaction.NewVocab(pieces, special, []int32{int32(len(pieces) - 2)})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The fast path of Mask inside JSON strings (an index of the vocabulary,
// not a walk per token) keeps exactly the tokens Allows (a byte-by-byte
// simulation) allows, at every step, on a vocabulary whose pieces split
// characters and escapes anywhere; and the outputs validate.
func TestMaskAgreesWithAllowsOnSplitPieces(t *testing.T) {
	t.Parallel()
	v := randomVocab(t, 3000, 21)
	schemas := []string{
		`{"type":"string","maxLength":12}`,
		`{"type":"string","minLength":3,"maxLength":5}`,
		`{"type":"object","properties":{"a":{"type":"string"},"b":{"type":["string","null"],"maxLength":4}},"required":["a"]}`,
		`{"type":"array","maxItems":3,"items":{"type":"string","minLength":1,"maxLength":3}}`,
		`{"type":"object","additionalProperties":{"type":"string","maxLength":2},"maxProperties":2}`,
	}
	corpus := nextactiontest.SchemaCorpus(t)
	for _, s := range corpus[:8] {
		schemas = append(schemas, string(s.JSON))
	}
	for i, s := range schemas {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			checkSchemaDecodes(t, v, []byte(s), 4, uint64(300+i))
		})
	}
}

// OpenAPI's "nullable": true (what the OpenAI SDKs' zodFunction and
// zodResponseFormat write for a nullable primitive) admits null beside the
// schema's types: random decodes validate against the same schema with
// null in its type list, and both null and other values come out.
func TestSchemaNullable(t *testing.T) {
	t.Parallel()
	v := testVocab(t)
	for i, c := range []struct{ schema, same string }{
		{`{"type":"boolean","nullable":true}`, `{"type":["boolean","null"]}`},
		{`{"type":"string","maxLength":4,"nullable":true}`, `{"type":["string","null"],"maxLength":4}`},
		{`{"type":["integer","null"],"nullable":true}`, `{"type":["integer","null"]}`},
		{`{"properties":{"a":{"type":"integer"}},"required":["a"],"nullable":true}`, `{"type":["object","null"],"properties":{"a":{"type":"integer"}},"required":["a"]}`},
		{`{"type":"integer","nullable":false}`, `{"type":"integer"}`},
	} {
		g, err := nextaction.SchemaGrammar([]byte(c.schema))
		if err != nil {
			t.Fatalf("%s: %v", c.schema, err)
		}
		validate := nextactiontest.Validator(t, []byte(c.same))
		rng := rand.New(rand.NewPCG(uint64(i), 9))
		nulls := 0
		for range 60 {
			bc := nextaction.NewByteConstraint(v, g)
			decode(t, v, bc, rng, bc.MinTokens()+rng.IntN(20))
			if err := validate(bc.Output()); err != nil {
				t.Fatalf("%s: output %q does not validate as %s: %v", c.schema, bc.Output(), c.same, err)
			}
			if string(bc.Output()) == "null" {
				nulls++
			}
		}
		if wantNull := strings.Contains(c.same, "null"); (nulls > 0) != wantNull || nulls == 60 {
			t.Fatalf("%s: %d of 60 outputs null", c.schema, nulls)
		}
	}
	if _, err := nextaction.SchemaGrammar([]byte(`{"type":"integer","nullable":"yes"}`)); err == nil || !strings.Contains(err.Error(), "nullable") {
		t.Fatalf("a non-boolean nullable: %v", err)
	}
}
