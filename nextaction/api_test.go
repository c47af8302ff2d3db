package nextaction_test

import (
	"encoding/json"
	"testing"

	"github.com/nextact/nextact/nextaction"
)

func TestWireJSON(t *testing.T) {
	t.Parallel()
	temp, seed, param := 0.7, uint64(42), "history[0].action.type"
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"minimal request", nextaction.NextActionRequest{Model: "m", Page: "x"}, `{"model":"m","page":"x"}`},
		{"full request", nextaction.NextActionRequest{
			Model: "m", Page: "p", Persona: "hiker", Format: "finetuned", Temperature: &temp, Seed: &seed, MaxTokens: 64,
			History: []nextaction.Step{{Action: nextaction.Action{Type: "terminate"}}},
		}, `{"model":"m","page":"p","history":[{"action":{"type":"terminate"}}],"persona":"hiker","format":"finetuned","temperature":0.7,"seed":42,"max_tokens":64}`},
		{"temperature zero is sent", nextaction.NextActionRequest{Model: "m", Page: "p", Temperature: new(float64)}, `{"model":"m","page":"p","temperature":0}`},
		{"response", nextaction.NextActionResponse{
			Action: nextaction.Action{Type: "click", Name: "buy_now"}, Rationale: "r",
			Usage:  nextaction.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15, PromptTokensDetails: &nextaction.PromptTokensDetails{CachedTokens: 8}},
			Timing: nextaction.Timing{TotalMs: 12.5, FirstTokenMs: 3},
		}, `{"action":{"type":"click","name":"buy_now"},"rationale":"r","usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":8}},"timing":{"total_ms":12.5,"first_token_ms":3}}`},
		{"error with nulls", nextaction.ErrorResponse{Error: nextaction.APIError{Message: "m", Type: "invalid_request_error"}},
			`{"error":{"message":"m","type":"invalid_request_error","param":null,"code":null}}`},
		{"error with param", nextaction.ErrorResponse{Error: nextaction.APIError{Message: "m", Type: "invalid_request_error", Param: &param}},
			`{"error":{"message":"m","type":"invalid_request_error","param":"history[0].action.type","code":null}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Fatalf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
}
