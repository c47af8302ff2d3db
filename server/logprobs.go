package server

// Logprobs on /v1: chat's logprobs + top_logprobs (OpenAI's
// choices[i].logprobs.content), completions' logprobs N and echo (the
// legacy tokens / token_logprobs / top_logprobs / text_offset shape that
// OpenAI's legacy API and vLLM use). The values come from the scheduler
// (batching/logprobs.go): the model's log-softmax of the raw logits row.
// Rendered by hand into JSON (stream events use it per chunk).

import (
	"encoding/json"
	"math"
	"strconv"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/internal/jsonstr"
)

// minLogprob stands for -Inf, which JSON cannot hold (vLLM's choice).
const minLogprob = -9999

// logprobOptions are a request's validated logprob fields.
type logprobOptions struct {
	// logprobs: return the output tokens' logprobs with the top most
	// likely tokens at each position.
	logprobs bool
	top      int
	// echo (completions) prepends the prompt to the text, and with
	// logprobs scores the prompt's tokens; scoreOnly (max_tokens 0 with
	// echo) generates nothing.
	echo, scoreOnly bool
	// echoed are the prompts' echoed texts, by prompt, and bos how many
	// leading tokens of a prompt (its BOS, added to text prompts) have
	// no text there.
	echoed []echoedPrompt
}

// echoedPrompt is one prompt as echo shows it.
type echoedPrompt struct {
	text string
	bos  int
}

// textChoice is completions' choice i for prompt's result res: the echoed
// prompt before the text, and the logprobs when asked.
func (o logprobOptions) textChoice(i int, v Vocabulary, prompt []int32, res batching.Chunk) textChoice {
	c := textChoice{Index: i, Text: res.Text, FinishReason: res.Finish.String()}
	var e echoedPrompt
	if o.echo && i < len(o.echoed) {
		e = o.echoed[i]
		c.Text = e.text + res.Text
	}
	if o.logprobs && v != nil {
		l := legacyLogprobs{v: v}
		if o.echo {
			l.addPrompt(prompt, e.bos, res.Prompt)
		}
		l.offset = len(e.text)
		for _, t := range res.Tokens {
			l.add(t, true)
		}
		c.Logprobs = json.RawMessage(l.appendTo(nil))
	}
	return c
}

// apply sets the scheduler request's logprob fields.
func (o logprobOptions) apply(r *batching.Request) {
	r.Logprobs, r.TopLogprobs = o.logprobs, o.top
	r.EchoLogprobs = o.echo && o.logprobs
	if o.scoreOnly {
		r.ScoreOnly, r.MaxTokens = true, 0
	}
}

// logprobOptions reads chat's logprobs (a boolean) and top_logprobs (0 to
// batching.MaxTopLogprobs, only with logprobs true).
func (r *chatRequest) logprobOptions() (logprobOptions, error) {
	return chatLogprobs(r.Logprobs, r.TopLogprobs)
}

// chatLogprobs validates logprobs and top_logprobs as chat has them (the
// Ollama API's too).
func chatLogprobs(logprobs bool, top *int) (logprobOptions, error) {
	o := logprobOptions{logprobs: logprobs}
	if v := top; v != nil {
		if !logprobs {
			return o, invalid("top_logprobs", "'top_logprobs' needs 'logprobs': true.")
		}
		if *v < 0 || *v > batching.MaxTopLogprobs {
			return o, invalid("top_logprobs", "'top_logprobs' must be between 0 and %d, got %d.", batching.MaxTopLogprobs, *v)
		}
		o.top = *v
	}
	return o, nil
}

// logprobOptions reads completions' logprobs (null or 0 to
// batching.MaxTopLogprobs), echo, and max_tokens 0 with echo (prompt
// scoring: it is taken out of max_tokens, which must otherwise be at
// least 1).
func (r *completionRequest) logprobOptions() (logprobOptions, error) {
	o := logprobOptions{echo: r.Echo}
	if v := r.Logprobs; v != nil {
		if *v < 0 || *v > batching.MaxTopLogprobs {
			return o, invalid("logprobs", "'logprobs' must be between 0 and %d, got %d.", batching.MaxTopLogprobs, *v)
		}
		o.logprobs, o.top = true, *v
	}
	if r.Echo && r.MaxCompletionTokens == nil && r.MaxTokens != nil && *r.MaxTokens == 0 {
		o.scoreOnly, r.MaxTokens = true, nil
	}
	if r.Echo && r.Stream {
		return o, invalid("stream", "'stream' is not supported with 'echo'.")
	}
	return o, nil
}

// maxEchoLogprobs bounds the prompt logprobs (each token's and its top
// entries) one /v1/completions request with echo may return: 2^20, about
// 30 MB of JSON.
const maxEchoLogprobs = 1 << 20

// checkEchoSize refuses an echo with logprobs whose prompts would return
// more than maxEchoLogprobs logprobs.
func (o logprobOptions) checkEchoSize(prompts [][]int32) error {
	if !o.echo || !o.logprobs {
		return nil
	}
	n := 0
	for _, p := range prompts {
		n += len(p) * (o.top + 1)
	}
	if n > maxEchoLogprobs {
		return invalid("logprobs", "'echo' with 'logprobs' %d on these prompts would return %d logprobs; at most %d are allowed: lower 'logprobs' or send fewer or shorter prompts.", o.top, n, maxEchoLogprobs)
	}
	return nil
}

// shownLogprob is lp as a response shows it: a number, -Inf (and NaN) as
// minLogprob.
func shownLogprob(lp float32) float32 {
	if math.IsInf(float64(lp), -1) || math.IsNaN(float64(lp)) {
		return minLogprob
	}
	return lp
}

// appendLogprob appends a logprob as a JSON number (shownLogprob).
func appendLogprob(b []byte, lp float32) []byte {
	return strconv.AppendFloat(b, float64(shownLogprob(lp)), 'g', -1, 32)
}

// appendBytes appends a piece's raw bytes as a JSON array of numbers.
func appendBytes(b []byte, piece string) []byte {
	b = append(b, '[')
	for i := 0; i < len(piece); i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(piece[i]), 10)
	}
	return append(b, ']')
}

// appendTokenEntry appends chat's {"token","logprob","bytes"} of one
// token, without the closing brace.
func appendTokenEntry(b []byte, v Vocabulary, id int32, lp float32) []byte {
	piece := v.Piece(id)
	b = append(b, `{"token":`...)
	b = jsonstr.Append(b, piece)
	b = append(b, `,"logprob":`...)
	b = appendLogprob(b, lp)
	b = append(b, `,"bytes":`...)
	return appendBytes(b, piece)
}

// appendChatLogprobs appends chat's logprobs object for toks:
// {"content":[{token, logprob, bytes, top_logprobs:[…]}…],"refusal":null}.
func appendChatLogprobs(b []byte, v Vocabulary, toks []batching.TokenLogprob) []byte {
	b = append(b, `{"content":[`...)
	for i, t := range toks {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendTokenEntry(b, v, t.ID, t.Logprob)
		b = append(b, `,"top_logprobs":[`...)
		for k, c := range t.Top {
			if k > 0 {
				b = append(b, ',')
			}
			b = appendTokenEntry(b, v, c.ID, c.Logprob)
			b = append(b, '}')
		}
		b = append(b, "]}"...)
	}
	return append(b, `],"refusal":null}`...)
}

// legacyLogprobs renders completions' logprobs object, token by token
// (the prompt's tokens first when echoed), keeping the text offset.
type legacyLogprobs struct {
	v                 Vocabulary
	tokens, lps, tops []byte // each array's entries so far
	offsets           []byte
	n                 int
	offset            int
}

// add appends one token: its logprob and top (null for both when scored
// is false: the prompt's first token), the top holding the token itself
// too, as OpenAI's legacy API and vLLM do.
func (l *legacyLogprobs) add(t batching.TokenLogprob, scored bool) {
	if l.n > 0 {
		l.tokens, l.lps, l.tops, l.offsets = append(l.tokens, ','), append(l.lps, ','), append(l.tops, ','), append(l.offsets, ',')
	}
	l.n++
	piece := l.v.Piece(t.ID)
	l.tokens = jsonstr.Append(l.tokens, piece)
	l.offsets = strconv.AppendInt(l.offsets, int64(l.offset), 10)
	l.offset += len(piece)
	if !scored {
		l.lps, l.tops = append(l.lps, "null"...), append(l.tops, "null"...)
		return
	}
	l.lps = appendLogprob(l.lps, t.Logprob)
	l.tops = append(l.tops, '{')
	self := false
	for k, c := range t.Top {
		if k > 0 {
			l.tops = append(l.tops, ',')
		}
		self = self || c.ID == t.ID
		l.tops = jsonstr.Append(l.tops, l.v.Piece(c.ID))
		l.tops = append(l.tops, ':')
		l.tops = appendLogprob(l.tops, c.Logprob)
	}
	if !self {
		if len(t.Top) > 0 {
			l.tops = append(l.tops, ',')
		}
		l.tops = jsonstr.Append(l.tops, piece)
		l.tops = append(l.tops, ':')
		l.tops = appendLogprob(l.tops, t.Logprob)
	}
	l.tops = append(l.tops, '}')
}

// addPrompt adds an echoed prompt's tokens: the first unscored, then the
// scored ones (lps[i] is token i+1's); the first bos tokens are at offset
// 0 (their text is not echoed).
func (l *legacyLogprobs) addPrompt(prompt []int32, bos int, lps []batching.TokenLogprob) {
	for i, id := range prompt {
		if i == 0 || i-1 >= len(lps) {
			l.add(batching.TokenLogprob{ID: id}, false)
		} else {
			l.add(lps[i-1], true)
		}
		if i < bos {
			l.offset = 0
		}
	}
}

// appendTo appends the object and empties the arrays (the offset goes on:
// a stream's chunks continue it).
func (l *legacyLogprobs) appendTo(b []byte) []byte {
	b = append(b, `{"tokens":[`...)
	b = append(b, l.tokens...)
	b = append(b, `],"token_logprobs":[`...)
	b = append(b, l.lps...)
	b = append(b, `],"top_logprobs":[`...)
	b = append(b, l.tops...)
	b = append(b, `],"text_offset":[`...)
	b = append(b, l.offsets...)
	b = append(b, "]}"...)
	l.tokens, l.lps, l.tops, l.offsets, l.n = l.tokens[:0], l.lps[:0], l.tops[:0], l.offsets[:0], 0
	return b
}

// chatLogprobs is a chat choice's logprobs for result res: nil (null)
// unless asked.
func (o logprobOptions) chatLogprobs(v Vocabulary, res batching.Chunk) any {
	if !o.logprobs || v == nil {
		return nil
	}
	return json.RawMessage(appendChatLogprobs(nil, v, res.Tokens))
}

// checkLogprobsModel refuses logprobs for a model whose vocabulary the
// server cannot read (no pieces to show).
func checkLogprobsModel(m *Model, o logprobOptions) error {
	if o.logprobs && m.Vocab == nil {
		return invalid("logprobs", "logprobs are not available for this model.")
	}
	return nil
}

// streamEvents is the event format of choice index of a stream, with
// logprobs when opts asks for them.
func streamEvents(meta responseMeta, m *Model, opts genOptions, index int) *eventFormat {
	f := newEventFormatAt(meta, opts.includeUsage, index)
	if opts.lp.logprobs {
		f.lp = &streamLogprobs{v: m.Vocab, kind: meta.kind, legacy: legacyLogprobs{v: m.Vocab}}
	}
	return f
}

// streamLogprobs renders the logprobs of each stream chunk.
type streamLogprobs struct {
	v      Vocabulary
	kind   endpoint
	legacy legacyLogprobs
}

// render appends one chunk's logprobs object, or null when the chunk has
// no tokens.
func (s *streamLogprobs) render(b []byte, toks []batching.TokenLogprob) []byte {
	if len(toks) == 0 {
		return append(b, "null"...)
	}
	if s.kind == chatEndpoint {
		return appendChatLogprobs(b, s.v, toks)
	}
	for _, t := range toks {
		s.legacy.add(t, true)
	}
	return s.legacy.appendTo(b)
}

// echoedPrompt is how echo shows prompt p (tokenized as toks): a text
// prompt as given (after its BOS, which has no text there), token ids as
// their pieces.
func (m *Model) echoedPrompt(p completionPrompt, toks []int32) echoedPrompt {
	if !p.isIDs {
		return echoedPrompt{text: p.text, bos: len(m.BOS)}
	}
	var b []byte
	if m.Vocab != nil {
		for _, t := range toks {
			b = append(b, m.Vocab.Piece(t)...)
		}
	}
	return echoedPrompt{text: string(b)}
}
