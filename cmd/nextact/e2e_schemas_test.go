package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/nextact/nextact/nextaction/nextactiontest"
)

// Every schema of the corpus (nextaction/nextactiontest/testdata/schemas:
// Pydantic, Zod, OpenAI strict-mode and shopping schemas) produces output
// that a real JSON Schema validator accepts, through
// /v1/chat/completions on the real engine at temperature 1.0 with seeds,
// whether the model ends the JSON or max_tokens cuts it short.
func TestSchemaCorpusOnRealEngine(t *testing.T) {
	ts := startServer(t, testConfig())
	type result struct {
		name, out, finish string
		err               error
	}
	corpus := nextactiontest.SchemaCorpus(t)
	seeds := []int{1, 2}
	results := make(chan result, len(corpus)*len(seeds))
	sem := make(chan struct{}, 8) // the server's slots
	var wg sync.WaitGroup
	for i, s := range corpus {
		for _, seed := range seeds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Fill in %s"}],"temperature":1.0,"seed":%d,"max_tokens":%d,"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":%s}}}`,
					ts.modelID(), s.Name, seed, 200+100*seed+i, s.JSON)
				out, finish, err := chatContent(ts.URL+"/v1/chat/completions", body)
				results <- result{s.Name, out, finish, err}
			}()
		}
	}
	wg.Wait()
	close(results)
	validators := map[string]func([]byte) error{}
	for _, s := range corpus {
		validators[s.Name] = nextactiontest.Validator(t, s.JSON)
	}
	finishes := map[string]int{}
	for r := range results {
		if r.err != nil {
			t.Errorf("%s: %v", r.name, r.err)
			continue
		}
		finishes[r.finish]++
		if err := validators[r.name]([]byte(r.out)); err != nil {
			t.Errorf("%s: output %q (finish %s) does not validate: %v", r.name, r.out, r.finish, err)
		}
	}
	t.Logf("finish reasons: %v", finishes)
}

// chatContent posts a chat request and returns the message content and
// finish reason, or an error for anything but a 200 with one choice.
func chatContent(url, body string) (content, finish string, err error) {
	resp, err := http.Post(url, "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	var out struct {
		Choices []struct {
			Message      struct{ Content string } `json:"message"`
			FinishReason string                   `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(data, &out); err != nil || resp.StatusCode != 200 || len(out.Choices) != 1 {
		return "", "", fmt.Errorf("status %d: %.300s", resp.StatusCode, data)
	}
	return out.Choices[0].Message.Content, out.Choices[0].FinishReason, nil
}
