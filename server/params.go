package server

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/nextact/nextact/batching"
)

// genOptions are the validated generation fields of a request.
type genOptions struct {
	sampling batching.Sampling
	stop     []string
	// maxTokens is nil when the request gives none.
	maxTokens    *int
	stream       bool
	includeUsage bool
	// format is a json_object or json_schema response_format, else nil.
	format *responseFormat
	// ctxLimit, when positive and below the model's context, is the
	// context the prompt and completion must fit (Ollama's num_ctx).
	ctxLimit int
	// capMaxTokens caps maxTokens at the context left after the prompt
	// instead of refusing the request (Ollama's num_predict).
	capMaxTokens bool
	// defaultMax replaces Config.DefaultMaxTokens when positive (the
	// model's default max_tokens).
	defaultMax int
	// lp are the logprob fields (logprobs.go).
	lp logprobOptions
}

// SamplingDefaults are a model's defaults for the sampling fields a
// request of /v1/chat/completions or /v1/completions leaves out (a
// --models manifest's "sampling", an Ollama model's params). nil fields
// leave the server's defaults. The source validates them.
type SamplingDefaults struct {
	Temperature, TopP *float64
	TopK              *int
	Seed              *int64
	// MaxTokens is the default max_tokens, capped by the context left as
	// Config.DefaultMaxTokens is.
	MaxTokens *int
	Stop      []string
}

// apply sets the defaults of the fields p leaves out in o.
func (d SamplingDefaults) apply(p *genParams, o *genOptions) {
	if p.Temperature == nil && d.Temperature != nil {
		o.sampling.Temperature = *d.Temperature
	}
	if p.TopP == nil && d.TopP != nil {
		o.sampling.TopP = *d.TopP
	}
	if p.TopK == nil && d.TopK != nil {
		o.sampling.TopK = *d.TopK
	}
	if p.Seed == nil && d.Seed != nil {
		seed := uint64(*d.Seed)
		o.sampling.Seed = &seed
	}
	if o.maxTokens == nil && d.MaxTokens != nil && *d.MaxTokens > 0 {
		o.defaultMax = *d.MaxTokens
	}
	if isNull(p.Stop) && len(d.Stop) > 0 {
		o.stop = slices.Clone(d.Stop)
	}
}

// Limits of the sampling fields.
const (
	maxTemperature = 2
	// defaultTemperature is OpenAI's default.
	defaultTemperature = 1
)

// options validates the shared generation fields; stop strings are at
// most maxStopBytes long.
func (p *genParams) options(maxStopBytes int) (genOptions, error) {
	o := genOptions{stream: p.Stream}
	if p.StreamOptions != nil {
		o.includeUsage = p.StreamOptions.IncludeUsage
	}
	if err := p.unhonouredParams.check(); err != nil {
		return o, err
	}
	if err := checkResponseFormat(p.ResponseFormat); err != nil {
		return o, err
	}
	if rf := p.ResponseFormat; rf != nil && rf.Type != "text" {
		o.format = rf
	}
	var err error
	if o.maxTokens, err = p.maxTokens(); err != nil {
		return o, err
	}
	if o.sampling, err = p.samplingParams(); err != nil {
		return o, err
	}
	if o.stop, err = p.stops(maxStopBytes); err != nil {
		return o, err
	}
	return o, nil
}

func checkResponseFormat(rf *responseFormat) error {
	if rf == nil {
		return nil
	}
	switch rf.Type {
	case "text", "json_object":
		return nil
	case "json_schema":
		if rf.JSONSchema == nil || len(rf.JSONSchema.Schema) == 0 || isNull(rf.JSONSchema.Schema) {
			return invalid("response_format.json_schema.schema", "response_format json_schema needs json_schema.schema.")
		}
		return nil
	}
	return invalid("response_format", "Unknown response_format type %q: expected text, json_object or json_schema.", rf.Type)
}

// maxTokens picks max_completion_tokens, else max_tokens; each must be >= 1.
func (p *genParams) maxTokens() (*int, error) {
	if v := p.MaxCompletionTokens; v != nil {
		if *v < 1 {
			return nil, invalid("max_completion_tokens", "'max_completion_tokens' must be at least 1, got %d.", *v)
		}
		return v, nil
	}
	if v := p.MaxTokens; v != nil && *v < 1 {
		return nil, invalid("max_tokens", "'max_tokens' must be at least 1, got %d.", *v)
	}
	return p.MaxTokens, nil
}

func (p *genParams) samplingParams() (batching.Sampling, error) {
	s := batching.Sampling{Temperature: defaultTemperature, TopP: 1}
	if v := p.Temperature; v != nil {
		if *v < 0 || *v > maxTemperature {
			return s, invalid("temperature", "'temperature' must be between 0 and %d, got %g.", maxTemperature, *v)
		}
		s.Temperature = *v
	}
	if v := p.TopP; v != nil {
		if *v <= 0 || *v > 1 {
			return s, invalid("top_p", "'top_p' must be greater than 0 and at most 1, got %g.", *v)
		}
		s.TopP = *v
	}
	if v := p.TopK; v != nil {
		if *v < 0 {
			return s, invalid("top_k", "'top_k' must not be negative, got %d.", *v)
		}
		s.TopK = *v
	}
	if v := p.Seed; v != nil {
		seed := uint64(*v) // negative seeds map to distinct values too
		s.Seed = &seed
	}
	return s, p.penaltyParams.apply(&s)
}

// completionBudget is the number of tokens a request may generate, checking
// that prompt plus completion fit the model's context. promptParam names the
// field the prompt came from (messages or prompt).
func completionBudget(promptLen, ctxLen int, requested *int, defaultMax int, promptParam string) (int, error) {
	if promptLen >= ctxLen {
		return 0, &requestError{param: promptParam, code: "context_length_exceeded", msg: fmt.Sprintf(
			"This model's maximum context length is %d tokens, but the prompt has %d tokens, leaving no room for the completion. Please shorten the prompt.",
			ctxLen, promptLen)}
	}
	left := ctxLen - promptLen
	if requested != nil {
		// Compared with what is left, never added to the prompt: a
		// max_tokens near the integer maximum must not wrap.
		if *requested > left {
			return 0, &requestError{param: "max_tokens", code: "context_length_exceeded", msg: fmt.Sprintf(
				"This model's maximum context length is %d tokens. However, you requested %s tokens (%d in the prompt, %d for the completion). Please reduce the prompt or max_tokens.",
				ctxLen, saturatedSum(promptLen, *requested), promptLen, *requested)}
		}
		return *requested, nil
	}
	if defaultMax > 0 && defaultMax < left {
		return defaultMax, nil
	}
	return left, nil
}

// saturatedSum renders a+b for a message, for non-negative a and b,
// without wrapping: "more than <max int>" when the sum overflows.
func saturatedSum(a, b int) string {
	if b > math.MaxInt-a {
		return fmt.Sprintf("more than %d", math.MaxInt)
	}
	return strconv.Itoa(a + b)
}
