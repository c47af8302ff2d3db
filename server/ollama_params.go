package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/ollama/ollama/api"

	"github.com/nextact/nextact/models"
)

// Ollama's sampling defaults (api.DefaultOptions), which an Ollama request
// gets for the options it does not set.
const (
	ollamaTemperature = 0.8
	ollamaTopP        = 0.9
	ollamaTopK        = 40
)

// ollamaNeutral are options of Ollama's that nextact does not implement,
// accepted only at the value that turns them off.
var ollamaNeutral = map[string]float64{
	"typical_p": 1, "repeat_penalty": 1,
}

// ollamaLoadOptions are Ollama's options that configure loading a model
// (Runner) or shifting a full context: nextact's flags decide these, so a
// request's are refused.
var ollamaLoadOptions = map[string]string{
	"num_batch": "--step-tokens", "num_gpu": "--gpu-layers", "main_gpu": "--gpu-layers",
	"use_mmap": "", "num_thread": "--threads", "num_keep": "",
}

// ollamaOptions validates an Ollama request's options, format and stream
// flag into generation options. Honoured: temperature, top_p, top_k, seed
// (negative: random), num_predict (-1 and 0: the server's default, -2: the
// whole context left; capped by the context left), stop, num_ctx (at most
// the model's context: checked in ollamaRun), repeat_last_n (no effect
// without a repeat penalty), min_p, presence_penalty, frequency_penalty;
// typical_p and repeat_penalty (Ollama's applies to the last
// repeat_last_n tokens only) at their neutral values.
// Anything else is a 400 naming it. A null value is skipped, as Ollama
// does.
func (s *Server) ollamaOptions(opts map[string]any, format json.RawMessage, stream *bool) (genOptions, error) {
	temp, topP, topK := float64(ollamaTemperature), float64(ollamaTopP), ollamaTopK
	p := genParams{Temperature: &temp, TopP: &topP, TopK: &topK, Stream: stream == nil || *stream}
	var numCtx int
	fill := false
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first offending option is named, always the same
	for _, k := range keys {
		v := opts[k]
		if v == nil {
			continue
		}
		if err := p.setOllamaOption(k, v, &numCtx, &fill); err != nil {
			return genOptions{}, err
		}
	}
	rf, err := ollamaFormat(format)
	if err != nil {
		return genOptions{}, err
	}
	p.ResponseFormat = rf
	o, err := p.options(s.cfg.MaxStopBytes)
	if err != nil {
		return o, err
	}
	if fill {
		all := math.MaxInt
		o.maxTokens = &all
	}
	o.ctxLimit, o.capMaxTokens = numCtx, true
	return o, nil
}

// setOllamaOption sets option k to v (not null).
func (p *genParams) setOllamaOption(k string, v any, numCtx *int, fill *bool) error {
	switch k {
	case "temperature", "top_p", "min_p", "presence_penalty", "frequency_penalty":
		f, err := optionNumber(k, v)
		if err != nil {
			return err
		}
		switch k {
		case "temperature":
			p.Temperature = &f
		case "top_p":
			p.TopP = &f
		case "min_p":
			p.MinP = &f
		case "presence_penalty":
			p.PresencePenalty = &f
		default:
			p.FrequencyPenalty = &f
		}
	case "top_k":
		n, err := optionInt(k, v)
		if err != nil {
			return err
		}
		p.TopK = &n
	case "seed":
		n, err := optionInt(k, v)
		if err != nil {
			return err
		}
		if n >= 0 {
			seed := int64(n)
			p.Seed = &seed
		}
	case "num_predict":
		n, err := optionInt(k, v)
		switch {
		case err != nil:
			return err
		case n == -2:
			*fill = true
		case n < -2:
			return invalid("options.num_predict", "num_predict must be -2 (fill the context), -1 or 0 (the server's default), or a positive number of tokens, got %d.", n)
		case n > 0:
			p.MaxTokens = &n
		}
	case "num_ctx":
		n, err := optionInt(k, v)
		if err != nil {
			return err
		}
		if n < 0 {
			return invalid("options.num_ctx", "num_ctx must not be negative, got %d.", n)
		}
		*numCtx = n
	case "stop":
		list, ok := v.([]any)
		if !ok {
			return invalid("options.stop", "Option \"stop\" must be an array of strings.")
		}
		for _, e := range list {
			if _, ok := e.(string); !ok {
				return invalid("options.stop", "Option \"stop\" must be an array of strings.")
			}
		}
		raw, err := json.Marshal(list)
		if err != nil {
			return invalid("options.stop", "Option \"stop\" must be an array of strings.")
		}
		p.Stop = raw
	case "repeat_last_n":
		if _, err := optionInt(k, v); err != nil {
			return err
		}
	default:
		return unsupportedOption(k, v)
	}
	return nil
}

// unsupportedOption explains why option k is refused, unless v is the
// neutral value of an option nextact does not implement.
func unsupportedOption(k string, v any) error {
	if neutral, ok := ollamaNeutral[k]; ok {
		f, err := optionNumber(k, v)
		if err != nil || f == neutral {
			return err
		}
		return invalid("options."+k, "Option %q is not supported: nextact samples without it; leave it out or set it to %g.", k, neutral)
	}
	if flag, ok := ollamaLoadOptions[k]; ok {
		how := "nextact does not take it per request"
		if flag != "" {
			how = "the server's " + flag + " decides it"
		}
		return invalid("options."+k, "Option %q is not supported: %s.", k, how)
	}
	return invalid("options."+k, "Unknown option %q.", truncate(k, 64))
}

// optionNumber reads a numeric option.
func optionNumber(k string, v any) (float64, error) {
	f, ok := v.(float64)
	if !ok {
		return 0, invalid("options."+k, "Option %q must be a number.", k)
	}
	return f, nil
}

// maxOptionInt bounds integer options, so that every one converts to an
// int exactly.
const maxOptionInt = 1 << 53

// optionInt reads an integral option.
func optionInt(k string, v any) (int, error) {
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) || math.Abs(f) > maxOptionInt {
		return 0, invalid("options."+k, "Option %q must be an integer between -2^53 and 2^53.", k)
	}
	return int(f), nil
}

// ollamaFormat reads Ollama's format: absent, null or "" for text, "json"
// for any JSON object, or a JSON schema object.
func ollamaFormat(raw json.RawMessage) (*responseFormat, error) {
	t := bytes.TrimSpace(raw)
	if isNull(t) || string(t) == `""` {
		return nil, nil
	}
	var s string
	if json.Unmarshal(t, &s) == nil && s == "json" {
		return &responseFormat{Type: "json_object"}, nil
	}
	if t[0] != '{' {
		return nil, invalid("format", `'format' must be "json" or a JSON schema object.`)
	}
	return &responseFormat{Type: "json_schema", JSONSchema: &jsonSchemaSpec{Schema: t}}, nil
}

// ollamaMessages converts an Ollama chat's messages: system, user and
// assistant turns of text; images, tools and tool calls are refused, a
// message's thinking is dropped.
func ollamaMessages(in []api.Message, max int) ([]models.Message, error) {
	if len(in) > max {
		return nil, &requestError{param: "messages", code: "too_many_messages",
			msg: fmt.Sprintf("'messages' holds %d messages; at most %d are allowed.", len(in), max)}
	}
	out := make([]models.Message, len(in))
	for i, m := range in {
		switch {
		case m.Role != "system" && m.Role != "user" && m.Role != "assistant":
			return nil, invalid(fmt.Sprintf("messages[%d].role", i),
				"Invalid role %q in messages[%d]: expected system, user or assistant (nextact has no tools).", truncate(m.Role, 32), i)
		case len(m.Images) > 0:
			return nil, invalid(fmt.Sprintf("messages[%d].images", i), "messages[%d] has images: nextact serves text models only.", i)
		case len(m.ToolCalls) > 0 || m.ToolName != "" || m.ToolCallID != "":
			return nil, invalid(fmt.Sprintf("messages[%d].tool_calls", i), "messages[%d] has tool calls: nextact has no tools.", i)
		}
		out[i] = models.Message{Role: m.Role, Content: m.Content}
	}
	return out, nil
}

// thinks reports whether a request asks for thinking (true or a level).
func thinks(t *api.ThinkValue) bool {
	return t != nil && t.Value != nil && !(t.IsBool() && !t.Bool())
}

// isTrue reports whether an optional flag is set and true.
func isTrue(b *bool) bool { return b != nil && *b }

// ollamaFlags are the request fields chat and generate refuse alike.
type ollamaFlags struct {
	model           string
	think           *api.ThinkValue
	truncate, shift *bool
	debugRenderOnly bool
}

func (f ollamaFlags) check() error {
	switch {
	case thinks(f.think):
		return invalid("think", "%q does not support thinking.", truncate(f.model, 64))
	case isTrue(f.truncate) || isTrue(f.shift):
		return invalid("truncate", "truncate and shift are not supported: nextact never cuts a prompt; one over the context is refused.")
	case f.debugRenderOnly:
		return invalid("_debug_render_only", "_debug_render_only is not supported.")
	}
	return nil
}

// checkOllamaChat refuses the chat fields nextact does not serve.
func checkOllamaChat(r *api.ChatRequest) error {
	if len(r.Tools) > 0 {
		return invalid("tools", "%q does not support tools: nextact has no tool calling.", truncate(r.Model, 64))
	}
	return ollamaFlags{r.Model, r.Think, r.Truncate, r.Shift, r.DebugRenderOnly}.check()
}

// checkOllamaGenerate refuses the generate fields nextact does not serve.
func checkOllamaGenerate(r *api.GenerateRequest) error {
	switch {
	case r.Template != "":
		return invalid("template", "'template' is not supported: nextact renders prompts in the model's chat format (llama3, chatml or mistral); send raw:true with a prompt formatted yourself instead.")
	case r.Raw && r.System != "":
		return invalid("system", "'system' cannot be used with raw: a raw prompt is sent as given.")
	case r.Suffix != "":
		return invalid("suffix", "'suffix' is not supported: nextact has no fill-in-the-middle.")
	case len(r.Context) > 0:
		return invalid("context", "'context' is not supported: send the whole prompt, or the conversation to /api/chat.")
	case len(r.Images) > 0:
		return invalid("images", "images are not supported: nextact serves text models only.")
	case r.Width != 0 || r.Height != 0 || r.Steps != 0:
		return invalid("width", "image generation is not supported: nextact serves text models only.")
	}
	return ollamaFlags{r.Model, r.Think, r.Truncate, r.Shift, r.DebugRenderOnly}.check()
}
