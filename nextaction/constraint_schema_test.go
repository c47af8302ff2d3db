package nextaction_test

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/nextact/nextact/nextaction"
)

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
		"required":["action","name"],"additionalProperties":false}`
	g, err := nextaction.SchemaGrammar([]byte(schema))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := nextaction.JSONObjectGrammar()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 200 {
		c := nextaction.NewByteConstraint(v, g)
		budget := c.MinTokens() + rng.IntN(60)
		if used := decode(t, v, c, rng, budget); used > budget {
			t.Fatalf("%d tokens over %d", used, budget)
		}
		var got struct {
			Action string   `json:"action"`
			Name   *string  `json:"name"`
			Qty    *int64   `json:"qty"`
			Price  *float64 `json:"price"`
			Tags   []string `json:"tags"`
			OK     *bool    `json:"ok"`
		}
		dec := json.NewDecoder(bytesReader(c.Output()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("output %q: %v", c.Output(), err)
		}
		if (got.Action != "click" && got.Action != "terminate") || got.Name == nil || len(*got.Name) > 12 ||
			got.Qty == nil || got.OK == nil || len(got.Tags) < 1 || len(got.Tags) > 3 {
			t.Fatalf("output %q does not match the schema", c.Output())
		}
		oc := nextaction.NewByteConstraint(v, obj)
		budget = oc.MinTokens() + rng.IntN(80)
		decode(t, v, oc, rng, budget)
		var m map[string]any
		if err := json.Unmarshal(oc.Output(), &m); err != nil {
			t.Fatalf("json_object output %q (round %d): %v", oc.Output(), i, err)
		}
	}
}

func TestSchemaUnsupportedFeaturesAreNamed(t *testing.T) {
	t.Parallel()
	for schema, feature := range map[string]string{
		`{"type":"object","properties":{"a":{"$ref":"#/x"}}}`:                     "$ref",
		`{"anyOf":[{"type":"string"}]}`:                                           "anyOf",
		`{"type":"string","pattern":"^a"}`:                                        "pattern",
		`{"type":"object","properties":{"a":{"type":"string","format":"email"}}}`: "format",
	} {
		_, err := nextaction.SchemaGrammar([]byte(schema))
		var ue *nextaction.UnsupportedError
		if !errors.As(err, &ue) || ue.Feature != feature {
			t.Errorf("%s: got %v, want unsupported %q", schema, err, feature)
		}
	}
	if _, err := nextaction.SchemaGrammar([]byte(`{"type":`)); err == nil {
		t.Error("malformed schema accepted")
	}
}
