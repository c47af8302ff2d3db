// Package batching is nextact's continuous-batching scheduler.
//
// One goroutine (the loop) owns the Engine. Every engine step carries one
// token for each running sequence plus chunks of waiting prompts under a
// per-step token budget; sequences join and leave between steps. Callers
// Submit a Request and read its output from a Handle. A full wait queue
// rejects at once with ErrQueueFull; nothing the loop does blocks on a caller.
package batching

import (
	"errors"
	"fmt"
)

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
// action space). The loop calls it for that sequence only; it need not be
// goroutine-safe, but it must not block.
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
// token. The scheduler then samples from the raw logits first and masks
// only when the token drawn is not allowed (rejection sampling: the same
// distribution as masking first, at the cost of one check per token).
type Allower interface {
	Allows(tok int32, remaining int) bool
}

// Forcer is an optional extension of Constraint: the tokens the constraint
// requires next (a literal run of a grammar). The scheduler asks once when
// the request starts and after every Accept, counts them as generated, and
// feeds them in one step instead of sampling them one by one.
// Done reports that the output is already complete (a grammar that is all
// literal completes on its forced tokens alone).
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
	// Priority orders waiting requests (see Priority); the zero value is
	// PriorityNormal.
	Priority Priority
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
	// FinishError: the engine failed this sequence; see Result.Err.
	FinishError
	// FinishShutdown: the scheduler closed before the sequence was served.
	FinishShutdown
	// FinishRejected: admission dropped the request before it started (it
	// waited longer than the maximum queue wait, or a request of a higher
	// priority took its place); Err is an *OverloadError.
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
	// CachedTokens are prompt tokens served from reused KV instead of being
	// computed (0 until prefix reuse lands).
	CachedTokens int
}

// Errors returned by Submit.
var (
	// ErrQueueFull: the wait queue is at capacity; retry later.
	ErrQueueFull = errors.New("queue full")
	// ErrClosed: the scheduler is shutting down or closed.
	ErrClosed = errors.New("scheduler closed")
)

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
