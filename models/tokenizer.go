package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Token types of tokenizer.ggml.token_type beyond normal and control.
const (
	tokenUserDefined int32 = 4
	tokenUnused      int32 = 5
)

// Bounds on what ReadTokenizer accepts; a Llama-3 tokenizer.json is 9 MB
// with 128,256 tokens and 280,147 merges.
const (
	maxTokenizerJSONBytes   = 256 << 20
	maxTokenizerConfigBytes = 16 << 20
	maxVocabTokens          = 1 << 21
	maxMerges               = 1 << 23
	maxTokenBytes           = 4096
	maxTemplateBytes        = 1 << 20
)

// GGUFTokenizer is a Hugging Face byte-level BPE tokenizer (tokenizer.json,
// plus tokenizer_config.json for the special tokens and chat template),
// in the form a GGUF file stores it.
type GGUFTokenizer struct {
	// Tokens and Types are indexed by token id (llama.cpp's token types:
	// 1 normal, 3 control, 4 user-defined, 5 unused for ids no token has).
	Tokens []string
	Types  []int32
	// Merges are "left right", by rank.
	Merges []string
	// Pre is llama.cpp's pre-tokenizer name (tokenizer.ggml.pre).
	Pre string
	// BOS and EOS are token ids, -1 when the config names none.
	BOS, EOS int
	// AddBOS says whether the tokenizer puts BOS before a text.
	AddBOS bool
	// ChatTemplate is the Jinja chat template ("" when the config has none).
	ChatTemplate string
}

// preTokenizerRegexes maps the Split regex of a tokenizer.json's
// pre-tokenizer to llama.cpp's name for the same pre-tokenization.
var preTokenizerRegexes = map[string]string{
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`: "llama-bpe",
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`:      "qwen2",
}

var validPreName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// hfTokenizer is the part of tokenizer.json that ReadTokenizer reads.
type hfTokenizer struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Model         struct {
		Type         string          `json:"type"`
		Vocab        map[string]int  `json:"vocab"`
		Merges       json.RawMessage `json:"merges"`
		ByteFallback bool            `json:"byte_fallback"`
	} `json:"model"`
}

// hfConfig is the part of tokenizer_config.json that ReadTokenizer reads.
type hfConfig struct {
	BOSToken     json.RawMessage `json:"bos_token"`
	EOSToken     json.RawMessage `json:"eos_token"`
	AddBOSToken  *bool           `json:"add_bos_token"`
	ChatTemplate json.RawMessage `json:"chat_template"`
}

// ReadTokenizer reads a byte-level BPE tokenizer from a Hugging Face
// tokenizer.json and, when configPath is not empty, its
// tokenizer_config.json (special tokens, add_bos_token, chat template).
// pre names llama.cpp's pre-tokenizer; "" detects it from the
// tokenizer's Split regex (Llama 3: llama-bpe, Qwen2: qwen2) or a plain
// ByteLevel pre-tokenizer (gpt-2). SentencePiece-style tokenizers (byte
// fallback, Metaspace), other models than BPE and normalizers other than
// NFC are refused: llama.cpp would tokenize them differently.
func ReadTokenizer(jsonPath, configPath, pre string) (*GGUFTokenizer, error) {
	var hf hfTokenizer
	if err := readJSONFile(jsonPath, maxTokenizerJSONBytes, &hf); err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var cfg hfConfig
	if configPath != "" {
		if err := readJSONFile(configPath, maxTokenizerConfigBytes, &cfg); err != nil {
			return nil, fmt.Errorf("tokenizer config: %w", err)
		}
	}
	tok, err := hf.convert(pre)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", jsonPath, err)
	}
	if err := tok.configure(cfg, hf.PostProcessor); err != nil {
		return nil, fmt.Errorf("tokenizer config %s: %w", configPath, err)
	}
	return tok, nil
}

// TokenizerConfigBeside is tokenizer_config.json in the directory of a
// tokenizer.json, or "" when there is none.
func TokenizerConfigBeside(jsonPath string) string {
	p := filepath.Join(filepath.Dir(jsonPath), "tokenizer_config.json")
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
		return p
	}
	return ""
}

// readJSONFile decodes the JSON file at path into v, refusing a file over
// limit bytes before reading it.
func readJSONFile(path string, limit int64, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if !st.Mode().IsRegular() || st.Size() > limit {
		return fmt.Errorf("read %s: not a regular file of at most %d bytes", path, limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return fmt.Errorf("read %s: over %d bytes", path, limit)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

func (hf *hfTokenizer) convert(pre string) (*GGUFTokenizer, error) {
	m := hf.Model
	switch {
	case m.Type != "BPE":
		return nil, fmt.Errorf("model type %q: only byte-level BPE tokenizers are supported", m.Type)
	case m.ByteFallback:
		return nil, errors.New("a BPE tokenizer with byte_fallback is SentencePiece-style (Llama 2, Mistral): not supported, only byte-level BPE")
	case len(m.Vocab) == 0:
		return nil, errors.New("empty vocabulary")
	case len(m.Vocab) > maxVocabTokens || len(hf.AddedTokens) > maxVocabTokens:
		return nil, fmt.Errorf("more than %d tokens", maxVocabTokens)
	}
	if err := checkNormalizer(hf.Normalizer); err != nil {
		return nil, err
	}
	detected, err := detectPre(hf.PreTokenizer)
	switch {
	case pre != "":
		if !validPreName.MatchString(pre) {
			return nil, fmt.Errorf("pre-tokenizer name %q is not a llama.cpp name", pre)
		}
		detected = pre
	case err != nil:
		return nil, err
	}
	n := 0
	for text, id := range m.Vocab {
		if id < 0 || id >= maxVocabTokens {
			return nil, fmt.Errorf("token %q has id %d, outside 0..%d", text, id, maxVocabTokens-1)
		}
		n = max(n, id+1)
	}
	for _, a := range hf.AddedTokens {
		if a.ID < 0 || a.ID >= maxVocabTokens {
			return nil, fmt.Errorf("added token %q has id %d, outside 0..%d", a.Content, a.ID, maxVocabTokens-1)
		}
		n = max(n, a.ID+1)
	}
	tok := &GGUFTokenizer{Tokens: make([]string, n), Types: make([]int32, n), Pre: detected, BOS: -1, EOS: -1}
	set := func(id int, text string, typ int32) error {
		switch {
		case text == "" || len(text) > maxTokenBytes:
			return fmt.Errorf("token %d: %d bytes (1 to %d)", id, len(text), maxTokenBytes)
		case tok.Types[id] != 0 && tok.Tokens[id] != text:
			return fmt.Errorf("id %d is both %q and %q", id, tok.Tokens[id], text)
		}
		tok.Tokens[id], tok.Types[id] = text, typ
		return nil
	}
	for text, id := range m.Vocab {
		if err := set(id, text, tokenNormal); err != nil {
			return nil, err
		}
	}
	for _, a := range hf.AddedTokens {
		typ := tokenUserDefined
		if a.Special {
			typ = tokenControl
		}
		if err := set(a.ID, a.Content, typ); err != nil {
			return nil, err
		}
	}
	seen := make(map[string]int, n)
	for id, text := range tok.Tokens {
		if tok.Types[id] == 0 { // a gap, as llama.cpp's converter fills it
			tok.Tokens[id], tok.Types[id] = fmt.Sprintf("[PAD%d]", id), tokenUnused
			text = tok.Tokens[id]
		}
		if prev, dup := seen[text]; dup {
			return nil, fmt.Errorf("tokens %d and %d are both %q", prev, id, text)
		}
		seen[text] = id
	}
	if tok.Merges, err = parseMerges(m.Merges); err != nil {
		return nil, err
	}
	return tok, nil
}

// checkNormalizer accepts no normalizer or NFC (Qwen2's), which llama.cpp's
// converter ignores too.
func checkNormalizer(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var n struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &n); err != nil {
		return fmt.Errorf("normalizer: %w", err)
	}
	if n.Type != "NFC" {
		return fmt.Errorf("normalizer %q: not supported (llama.cpp applies none to byte-level BPE)", n.Type)
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// preTokenizer is a node of a tokenizer.json's pre_tokenizer.
type preTokenizer struct {
	Type          string         `json:"type"`
	Pretokenizers []preTokenizer `json:"pretokenizers"`
	Pattern       struct {
		Regex string `json:"Regex"`
	} `json:"pattern"`
	UseRegex       *bool `json:"use_regex"`
	AddPrefixSpace bool  `json:"add_prefix_space"`
}

// detectPre names llama.cpp's pre-tokenizer for a byte-level one: a Split
// by a known regex followed by ByteLevel without its own regex, or
// ByteLevel alone with GPT-2's regex.
func detectPre(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", errors.New("no pre_tokenizer: not a byte-level BPE tokenizer")
	}
	var p preTokenizer
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", fmt.Errorf("pre_tokenizer: %w", err)
	}
	steps := []preTokenizer{p}
	if p.Type == "Sequence" {
		steps = p.Pretokenizers
	}
	last := len(steps) - 1
	if last < 0 || steps[last].Type != "ByteLevel" || steps[last].AddPrefixSpace {
		return "", errors.New("pre_tokenizer does not end with a ByteLevel step without add_prefix_space: not a supported byte-level BPE tokenizer")
	}
	byteRegex := steps[last].UseRegex == nil || *steps[last].UseRegex
	switch {
	case last == 0 && byteRegex:
		return "gpt-2", nil
	case last == 1 && !byteRegex && steps[0].Type == "Split":
		if name, ok := preTokenizerRegexes[steps[0].Pattern.Regex]; ok {
			return name, nil
		}
		return "", fmt.Errorf("pre-tokenizer regex %q not recognised: name llama.cpp's pre-tokenizer with --tokenizer-pre", steps[0].Pattern.Regex)
	}
	return "", errors.New("pre_tokenizer not recognised: name llama.cpp's pre-tokenizer with --tokenizer-pre")
}

// parseMerges reads merges written as "a b" strings or as ["a", "b"] pairs.
func parseMerges(raw json.RawMessage) ([]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("merges: %w", err)
	}
	if len(items) > maxMerges {
		return nil, fmt.Errorf("%d merges, more than %d", len(items), maxMerges)
	}
	out := make([]string, len(items))
	for i, it := range items {
		var s string
		if err := json.Unmarshal(it, &s); err == nil {
			if l, r, ok := strings.Cut(s, " "); !ok || l == "" || r == "" || strings.Contains(r, " ") {
				return nil, fmt.Errorf("merge %d (%q) is not two tokens separated by a space", i, s)
			}
			out[i] = s
			continue
		}
		var pair []string
		if err := json.Unmarshal(it, &pair); err != nil || len(pair) != 2 || pair[0] == "" || pair[1] == "" {
			return nil, fmt.Errorf("merge %d is neither \"a b\" nor [\"a\", \"b\"]", i)
		}
		if strings.Contains(pair[0], " ") || strings.Contains(pair[1], " ") {
			return nil, fmt.Errorf("merge %d (%q) has a space inside a token, which GGUF merges cannot hold", i, pair)
		}
		out[i] = pair[0] + " " + pair[1]
	}
	return out, nil
}

// configure reads the special tokens, add_bos_token and the chat template.
func (t *GGUFTokenizer) configure(cfg hfConfig, postProcessor json.RawMessage) error {
	var err error
	if t.BOS, err = t.specialID("bos_token", cfg.BOSToken); err != nil {
		return err
	}
	if t.EOS, err = t.specialID("eos_token", cfg.EOSToken); err != nil {
		return err
	}
	if cfg.AddBOSToken != nil {
		t.AddBOS = *cfg.AddBOSToken && t.BOS >= 0
	} else if t.BOS >= 0 {
		t.AddBOS = prependsToken(postProcessor, t.Tokens[t.BOS])
	}
	if t.ChatTemplate, err = chatTemplate(cfg.ChatTemplate); err != nil {
		return err
	}
	return nil
}

// specialID finds the token a config entry names, written as a string or
// as {"content": ...}; null or absent is -1.
func (t *GGUFTokenizer) specialID(key string, raw json.RawMessage) (int, error) {
	if isNull(raw) {
		return -1, nil
	}
	var text string
	if err := json.Unmarshal(raw, &text); err != nil {
		var obj struct {
			Content string `json:"content"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil {
			return -1, fmt.Errorf("%s: neither a string nor {\"content\": ...}", key)
		}
		text = obj.Content
	}
	for id, tok := range t.Tokens {
		if tok == text {
			return id, nil
		}
	}
	return -1, fmt.Errorf("%s %q is not in the vocabulary", key, text)
}

// prependsToken reports whether a post-processor's TemplateProcessing
// starts a single text with the token text (BOS).
func prependsToken(raw json.RawMessage, text string) bool {
	if isNull(raw) {
		return false
	}
	var p struct {
		Type       string            `json:"type"`
		Processors []json.RawMessage `json:"processors"`
		Single     []struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
		} `json:"single"`
	}
	if json.Unmarshal(raw, &p) != nil {
		return false
	}
	switch p.Type {
	case "Sequence":
		for _, sub := range p.Processors {
			if prependsToken(sub, text) {
				return true
			}
		}
	case "TemplateProcessing":
		return len(p.Single) > 0 && p.Single[0].SpecialToken != nil && p.Single[0].SpecialToken.ID == text
	}
	return false
}

// chatTemplate reads chat_template: a string, or a list of named templates
// of which "default" (else the first) is taken.
func chatTemplate(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		var named []struct {
			Name     string `json:"name"`
			Template string `json:"template"`
		}
		if err := json.Unmarshal(raw, &named); err != nil || len(named) == 0 {
			return "", errors.New("chat_template: neither a string nor a list of {name, template}")
		}
		s = named[0].Template
		for _, n := range named {
			if n.Name == "default" {
				s = n.Template
			}
		}
	}
	if len(s) > maxTemplateBytes {
		return "", fmt.Errorf("chat_template of %d bytes, more than %d", len(s), maxTemplateBytes)
	}
	return s, nil
}

// vocab turns the tokenizer into the generator's vocabulary. Control
// tokens other than BOS, EOS and the end-of-turn markers get small logits
// in the generated model's output layer.
func (t *GGUFTokenizer) vocab() *vocab {
	v := &vocab{
		tokens: t.Tokens, types: t.Types, merges: t.Merges, pre: t.Pre,
		bos: int64(t.BOS), eos: int64(t.EOS), eot: -1, eom: -1,
		addBOS: t.AddBOS, template: t.ChatTemplate,
	}
	for id, text := range t.Tokens {
		switch text {
		case "<|eot_id|>", "<|im_end|>":
			v.eot = int64(id)
		case "<|eom_id|>":
			v.eom = int64(id)
		}
	}
	v.damp = func(row int) bool {
		id := int64(row)
		return t.Types[row] == tokenControl && id != v.eos && id != v.eot && id != v.eom || t.Types[row] == tokenUnused
	}
	if v.eos < 0 && v.eot >= 0 {
		v.eos = v.eot
	}
	return v
}
