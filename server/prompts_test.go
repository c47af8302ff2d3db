package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Lists of prompts and token-id prompts on /v1/completions: one choice per
// prompt, index set, each the answer the prompt gets alone; token ids are
// used as given (no BOS).
func TestCompletionPromptForms(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{slots: 2})
	tests := []struct {
		name   string
		prompt string // JSON
		texts  []string
		usage  usage
	}{
		{"strings", `["tell me","ab","xyz"]`, []string{greedyText('e', 6), greedyText('b', 6), greedyText('z', 6)}, usage{8 + 3 + 4, 18, 33}},
		{"token ids", `[94,116,101]`, []string{greedyText('e', 6)}, usage{3, 6, 9}},
		{"lists of token ids", `[[116,101],[97,98]]`, []string{greedyText('e', 6), greedyText('b', 6)}, usage{4, 12, 16}},
		{"strings and token ids", `["ab",[120,121,122]]`, []string{greedyText('b', 6), greedyText('z', 6)}, usage{6, 12, 18}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := `{"model":"` + testModel + `","prompt":` + tt.prompt + `,"max_tokens":6,"temperature":0}`
			resp, b := e.do(t, http.MethodPost, "/v1/completions", body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			var r struct {
				Object  string `json:"object"`
				Choices []struct {
					Index        int    `json:"index"`
					Text         string `json:"text"`
					FinishReason string `json:"finish_reason"`
				} `json:"choices"`
				Usage usage `json:"usage"`
			}
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			if r.Object != "text_completion" || len(r.Choices) != len(tt.texts) {
				t.Fatalf("answer %s", b)
			}
			for i, c := range r.Choices {
				if c.Index != i || c.Text != tt.texts[i] || c.FinishReason != "length" {
					t.Errorf("choice %d = %+v, want text %q", i, c, tt.texts[i])
				}
			}
			if r.Usage != tt.usage {
				t.Errorf("usage %+v, want %+v", r.Usage, tt.usage)
			}
		})
	}
}

func TestCompletionPromptErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	many := `[` + strings.Repeat(`"a",`, 64) + `"a"]`
	stops := func(n int) string {
		var s []string
		for i := range n {
			s = append(s, fmt.Sprintf("%q", fmt.Sprint("s", i)))
		}
		return "[" + strings.Join(s, ",") + "]"
	}
	for _, tc := range []struct {
		name, prompt, extra string
		status              int
		param, msg          string
	}{
		{"empty array", `[]`, ``, 400, "prompt", "empty array"},
		{"ids then a string", `[1,"a"]`, ``, 400, "prompt", "token ids"},
		{"empty id list", `[[]]`, ``, 400, "prompt[0]", "must not be empty"},
		{"id past the vocabulary", `[116,300]`, ``, 400, "prompt", "outside the vocabulary of 300"},
		{"negative id", `[[1],[-1]]`, ``, 400, "prompt[1]", "outside the vocabulary"},
		{"fractional id", `[1.5]`, ``, 400, "prompt", "token ids"},
		{"a number in a list of lists", `[[1],5]`, ``, 400, "prompt", "array of strings"},
		{"an object", `{"a":1}`, ``, 400, "prompt", "array of strings"},
		{"65 prompts", many, ``, 400, "prompt", "at most 64"},
		{"stream of two", `["a","b"]`, `,"stream":true`, 400, "stream", "more than one prompt"},
		{"empty string in a list", `["a",""]`, ``, 200, "", ""}, // the BOS alone
		{"16 stops", `"a"`, `,"stop":` + stops(16), 200, "", ""},
		{"17 stops", `"a"`, `,"stop":` + stops(17), 400, "stop", "at most 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := `{"model":"` + testModel + `","prompt":` + tc.prompt + `,"max_tokens":2` + tc.extra + `}`
			resp, b := e.do(t, http.MethodPost, "/v1/completions", body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if tc.status == 200 {
				return
			}
			var eb struct {
				Error struct {
					Message string  `json:"message"`
					Param   *string `json:"param"`
				} `json:"error"`
			}
			if err := json.Unmarshal(b, &eb); err != nil || eb.Error.Param == nil || *eb.Error.Param != tc.param || !strings.Contains(eb.Error.Message, tc.msg) {
				t.Fatalf("error %s, want param %s and %q", b, tc.param, tc.msg)
			}
		})
	}
}
