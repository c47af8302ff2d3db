// Package batching is nextact's continuous-batching scheduler.
//
// One goroutine (the loop) owns the Engine. Every engine step carries one
// token for each running sequence plus chunks of waiting prompts under a
// per-step token budget; sequences join and leave between steps. Callers
// Submit a Request and read its output from a Handle. Admission decides
// every Submit at once (package admission: admit, queue, or reject with an
// *admission.OverloadError); nothing the loop does blocks on a caller.
//
// Each step is planned by a pure function (plan.go) from a view of the
// slots, the head of the queue and the step's token budget: which
// sequences end, which waiting requests take which slots and how their KV
// starts (prefix reuse), which tokens go into the batch and which rows are
// sampled, and whether arrivals are admitted while the engine computes.
// The loop builds the view, applies the plan and samples the step's rows
// in parallel. A panic in the work the loop does for one sequence
// (sampler, constraint, stop strings, emitting) fails that sequence alone
// (fault.go).
package batching

import (
	"errors"
	"fmt"
	"time"

	"github.com/nextact/nextact/batching/admission"
)

// MaxSlots bounds Config.Slots. It is also llama.cpp's LLAMA_MAX_SEQ, the
// most sequences one context holds, so every engine can take it.
const MaxSlots = 256

// Batch is the input of one engine step, as parallel slices: entry i puts
// Tokens[i] at position Pos[i] of sequence Seq[i], and asks for that
// position's logits when Logits[i] is set.
type Batch struct {
	Tokens []int32
	Pos    []int32
	Seq    []int32
	Logits []bool
}

// Len is the number of entries in the batch.
func (b *Batch) Len() int { return len(b.Tokens) }

// Add appends one entry.
func (b *Batch) Add(tok, pos, seq int32, logits bool) {
	b.Tokens = append(b.Tokens, tok)
	b.Pos = append(b.Pos, pos)
	b.Seq = append(b.Seq, seq)
	b.Logits = append(b.Logits, logits)
}

// Reset empties the batch, keeping its storage.
func (b *Batch) Reset() {
	b.Tokens, b.Pos, b.Seq, b.Logits = b.Tokens[:0], b.Pos[:0], b.Seq[:0], b.Logits[:0]
}

// Engine is what the scheduler needs from a model runtime. Only the loop
// goroutine calls it, so implementations need not be goroutine-safe for
// these methods.
type Engine interface {
	// Decode evaluates one batch. Sequence ids are slot indexes in
	// [0, Slots); positions of a sequence are consecutive from 0. It may
	// return before the computation ends (a GPU backend); the first Logits
	// call then waits for it.
	Decode(b *Batch) error
	// Logits returns the logits row of batch entry i of the last Decode
	// (entry i must have had Logits set): a view of the engine's own
	// output buffer, with no copy. The view is valid until the next
	// Decode, which overwrites it: the caller must not keep it, or read it
	// from another goroutine, past that call. The caller may write into it
	// (constraints mask rows in place). Rows of different entries do not
	// overlap, so different goroutines may read and write different rows.
	Logits(i int) ([]float32, error)
	// ClearSeq drops everything the engine holds for a sequence.
	ClearSeq(seq int32) error
}

// Vocab answers questions about tokens. MUST be goroutine-safe.
type Vocab interface {
	// Piece is the raw bytes a token stands for (a byte-level BPE piece may
	// be part of a UTF-8 character).
	Piece(tok int32) string
	// IsEOG reports whether tok ends generation.
	IsEOG(tok int32) bool
	// Size is the number of tokens in the vocabulary.
	Size() int
}

// Sampling holds per-request sampling parameters.
type Sampling struct {
	// Temperature 0 is greedy decoding.
	Temperature float64
	// TopP in (0,1]; 0 means 1 (no nucleus cut).
	TopP float64
	// TopK keeps the K most likely tokens; 0 means no cut.
	TopK int
	// Seed makes sampling reproducible. Without one the scheduler draws one.
	Seed *uint64
}

// Constraint restricts what one sequence may generate (a grammar, a page's
// action space). The scheduler calls it for that sequence only, from one
// goroutine at a time (Submit's, then the loop's or a sampling worker's,
// in that order); it need not be goroutine-safe, but it must not block. A
// panic in it fails that sequence alone.
type Constraint interface {
	// Mask sets the logits of every token that may not come next to -Inf.
	// remaining is how many more tokens the sequence may generate,
	// counting this one; a constraint that must always finish uses it to
	// close early. It returns an error when no token may come next.
	Mask(logits []float32, remaining int) error
	// Accept advances past tok, which Mask allowed. done reports that the
	// output is complete: the sequence ends with FinishStop.
	Accept(tok int32) (done bool, err error)
	// MinTokens is the fewest tokens a complete output takes from the
	// start; Submit refuses a MaxTokens below it.
	MinTokens() int
}

// Allower is an optional extension of Constraint: a cheap test of one
// token. Where no top-k or top-p cut applies (greedy, or temperature
// alone), the scheduler then samples from the raw logits first and masks
// only when the token drawn is not allowed: rejection sampling, the same
// distribution as masking first at the cost of one check per token. A cut
// is taken over the allowed tokens, so with one the row is masked first.
type Allower interface {
	Allows(tok int32, remaining int) bool
}

// Forcer is an optional extension of Constraint: the tokens the constraint
// requires next (a literal run of a grammar). The scheduler asks once in
// Submit and after every Accept, counts them as generated, and feeds them
// in one step instead of sampling them one by one. Done reports that the
// output is already complete: a grammar that is all literal (a const-only
// schema) completes on its forced tokens alone, and such a request ends
// without taking a slot or evaluating its prompt.
type Forcer interface {
	Forced() []int32
	Done() bool
}

// Request is one generation.
type Request struct {
	// Prompt is the tokenized prompt, at least one token.
	Prompt []int32
	// MaxTokens bounds the completion; 0 means until the context is full.
	MaxTokens int
	Sampling  Sampling
	// Stop strings end generation; the matched text is not returned.
	Stop []string
	// Constraint, when set, masks every sampled token and decides when the
	// output is complete; end-of-generation tokens then end the sequence
	// only when the constraint allows and accepts them.
	Constraint Constraint
	// Priority orders waiting requests (see admission.Priority); the zero
	// value is admission.PriorityNormal.
	Priority admission.Priority
	// Continues marks a step of an episode already under way (a shopper
	// session past its first step): within its priority class it waits
	// ahead of requests that start an episode, so running sessions finish
	// under a burst of new ones; between two first steps at most
	// Config.EpisodeBypass continuing steps go first, so new sessions still
	// start.
	Continues bool
	// PriorWait is how long the request already waited before Submit (for
	// its model to load): it counts as queue time, in the Timing reported
	// and against the maximum queue wait. Negative values count as 0.
	PriorWait time.Duration
	// Logprobs asks for the logprob of every output token, and the
	// TopLogprobs (0..MaxTopLogprobs) most likely alternatives, in
	// Chunk.Tokens; EchoLogprobs for those of the prompt's tokens too, in
	// Chunk.Prompt (every prompt position is computed: no prefix reuse);
	// ScoreOnly ends the request after its prompt, generating nothing
	// (FinishLength; MaxTokens must be 0). See logprobs.go.
	Logprobs     bool
	TopLogprobs  int
	EchoLogprobs bool
	ScoreOnly    bool
}

// FinishReason says why a sequence ended.
type FinishReason int

// Finish reasons. The zero value means "not finished".
const (
	NotFinished FinishReason = iota
	// FinishStop: an end-of-generation token or a stop string.
	FinishStop
	// FinishLength: MaxTokens reached or the sequence's context is full.
	FinishLength
	// FinishCancelled: the request's context ended (client gone, deadline).
	FinishCancelled
	// FinishError: the engine failed this sequence, or the work done for
	// it (sampling, its constraint) failed or panicked; see Chunk.Err.
	FinishError
	// FinishShutdown: the scheduler closed before the sequence was served.
	FinishShutdown
	// FinishRejected: admission dropped the request before it started (it
	// waited longer than the maximum queue wait, or a request of a higher
	// priority took its place); Err is an *admission.OverloadError.
	FinishRejected
)

// String returns the OpenAI name of the reason where one exists.
func (r FinishReason) String() string {
	switch r {
	case FinishStop:
		return "stop"
	case FinishLength:
		return "length"
	case FinishCancelled:
		return "cancelled"
	case FinishError:
		return "error"
	case FinishShutdown:
		return "shutdown"
	case FinishRejected:
		return "rejected"
	default:
		return ""
	}
}

// Usage counts tokens of one request.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	// CachedTokens are prompt tokens served from reused KV (the prefix
	// cache) instead of being computed.
	CachedTokens int
}

// ErrClosed is returned by Submit when the scheduler is shutting down or
// closed, and ends requests still there when Close gives up waiting.
var ErrClosed = errors.New("scheduler closed")

// RequestError is a request the scheduler refuses as malformed.
type RequestError struct {
	Field string
	Msg   string
}

func (e *RequestError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Msg) }

// SeqError is an engine error that concerns one sequence of a batch (an
// entry the engine refuses before evaluating anything: a position or a
// token out of range). The scheduler ends that sequence alone, with
// FinishError, and runs its step-mates again at the next step.
type SeqError struct {
	Seq int32
	Err error
}

func (e *SeqError) Error() string { return fmt.Sprintf("sequence %d: %v", e.Seq, e.Err) }

func (e *SeqError) Unwrap() error { return e.Err }
