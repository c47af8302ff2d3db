package nextaction

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/nextact/nextact/models"
)

// The history window keeps a next-action prompt inside its slot: the
// context length minus the tokens reserved for the answer (the request's
// max_tokens, else the planner's DefaultMaxTokens). Under the window
// policy, when the history does not fit, it is compacted in two stages,
// oldest first:
//
//  1. earlier steps lose their page: the page becomes PageOmitted, the
//     action and rationale stay (a page that takes no more tokens than the
//     marker is kept);
//  2. once every page is omitted, whole steps go.
//
// Compaction goes well below the limit, down to half of the history's
// budget, so that the steps that follow append to an unchanged prefix
// (which the prefix cache serves) until the budget is crossed again,
// instead of cutting the oldest step at every step.
//
// The window is a function of the request alone, so that a session and a
// stateless client that resends the same history get the same prompt: it
// is found by replaying the history as if each earlier step had been asked
// in turn (step j with the pages of steps 0..j-1 as history and its own
// page as the current one), carrying the compaction forward; the current
// request is the last turn of that replay. A compaction, once made, stays
// in every later step's prompt. The replay uses the current request's
// answer reserve and policy; a session that keeps them keeps its prompts'
// prefixes. Each message is tokenized once: the replay adds token counts.
//
// The history's budget at a turn is the limit minus the system prompt, the
// turn's page and the generation prompt, capped by HistoryPolicy.MaxTokens.
// A current page that does not fit even with no history is the request's
// error (context_length_exceeded); everything else fits.
//
// Under the strict policy nothing is compacted: a prompt over the context
// is a 400, and so is a history over MaxTokens.

// History policies.
const (
	HistoryWindow = "window"
	HistoryStrict = "strict"
)

// maxWindowRounds bounds the exact checks of a window whose token count
// was estimated short (only in formats that fold the system prompt into
// the first user turn); after them everything but the current page goes.
const maxWindowRounds = 4

// HistoryPolicy is how a history that does not fit is handled: the
// request field history_policy of POST /v1/actions/next, and history of
// POST /v1/sessions.
type HistoryPolicy struct {
	// Policy is "window" (the default when empty) or "strict".
	Policy string `json:"policy,omitempty"`
	// MaxTokens bounds the tokens the history takes in the prompt, as the
	// chat format renders it; 0: only the context bounds it.
	MaxTokens int `json:"max_tokens,omitempty"`
}

// Normalize returns h with its policy named canonically (empty is the
// window), or a *FieldError naming field's members.
func (h HistoryPolicy) Normalize(field string) (HistoryPolicy, error) {
	switch p := strings.ToLower(strings.TrimSpace(h.Policy)); p {
	case "", HistoryWindow:
		h.Policy = HistoryWindow
	case HistoryStrict:
		h.Policy = HistoryStrict
	default:
		return h, &FieldError{Field: field + ".policy", Msg: fmt.Sprintf(
			"unknown history policy %s (valid: %s, %s)", strconv.Quote(h.Policy), HistoryWindow, HistoryStrict)}
	}
	if h.MaxTokens < 0 {
		return h, &FieldError{Field: field + ".max_tokens", Msg: fmt.Sprintf("must not be negative, got %d", h.MaxTokens)}
	}
	return h, nil
}

// HistoryUsage tells what the history window left out of a prompt: the
// usage field history, an extension of OpenAI's usage.
type HistoryUsage struct {
	Policy string `json:"policy"`
	// Steps is the history's length as sent (or stored).
	Steps int `json:"steps"`
	// PagesOmitted counts steps whose page the prompt replaced by
	// PageOmitted (steps sent without a page not included).
	PagesOmitted int `json:"pages_omitted"`
	// StepsDropped counts the oldest steps left out entirely.
	StepsDropped int `json:"steps_dropped"`
	// DroppedTokens is the prompt's tokens with the whole history minus
	// its tokens as sent to the model.
	DroppedTokens int `json:"dropped_tokens"`
}

// window is a compaction: steps [0, dropped) are left out, steps
// [dropped, omitted) have their page omitted (where that saves tokens).
type window struct{ dropped, omitted int }

// historyCosts are a history's token counts, for the window's replay.
type historyCosts struct {
	// full and omit are prefix sums of the steps' tokens with their page
	// and with it omitted: step i takes full[i+1]-full[i].
	full, omit []int
	// page[i] is step i's page message; current the request's.
	page    []int
	current int
	// fixed is the system prompt and the generation prompt.
	fixed int
}

// between is the tokens steps [w.dropped, n) take under w.
func (h *historyCosts) between(w window, n int) int {
	return h.omit[w.omitted] - h.omit[w.dropped] + h.full[n] - h.full[w.omitted]
}

// compact applies the policy at one turn of the replay: n steps of
// history and a budget for them. Within budget, w stays; over it, pages
// then steps go until the history takes at most half the budget.
func (h *historyCosts) compact(w window, n, budget int) window {
	if h.between(w, n) <= budget {
		return w
	}
	target := budget / 2
	for w.omitted < n && h.between(w, n) > target {
		w.omitted++
	}
	for w.dropped < n && h.between(w, n) > target {
		w.dropped++
	}
	return w
}

// replay finds the window of a request with n steps of history: limit is
// the prompt's bound, capped the history's (MaxTokens, or MaxInt).
func (h *historyCosts) replay(n, limit, capped int) window {
	budget := func(page int) int { return min(capped, limit-h.fixed-page) }
	var w window
	for j := range n {
		w = h.compact(w, j, budget(h.page[j]))
	}
	return h.compact(w, n, budget(h.current))
}

// fitted is a prompt after the history policy.
type fitted struct {
	prompt []int32
	usage  HistoryUsage
}

// fit tokenizes the prompt of in, whose messages with every page are full
// (BuildPrompt's), and applies pol with reserve tokens kept for the answer.
func (p *Planner) fit(ctx context.Context, f Format, in PromptInput, full []models.Message, pol HistoryPolicy, reserve int) (fitted, error) {
	memo := &tokenMemo{tok: p.cfg.Tokenizer, m: map[models.Segment][]int32{}}
	segs, cost, err := memo.spans(ctx, p.cfg.ChatFormat, full)
	if err != nil {
		return fitted{}, err
	}
	n := len(in.History)
	usage := HistoryUsage{Policy: pol.Policy, Steps: n}
	whole := func() (fitted, error) {
		prompt, err := memo.join(ctx, segs)
		return fitted{prompt: prompt, usage: usage}, err
	}
	if n == 0 {
		return whole()
	}
	omitted := omitPages(full, f, n)
	_, ocost, err := memo.spans(ctx, p.cfg.ChatFormat, omitted)
	if err != nil {
		return fitted{}, err
	}
	if p.cfg.ChatFormat.FoldsSystem() {
		// The system prompt renders inside the first user turn: count it
		// apart, so that leaving that turn out does not seem to save it.
		sys, err := memo.tokens(ctx, models.Segment{Text: full[0].Content})
		if err != nil {
			return fitted{}, err
		}
		for _, c := range [][]int{cost, ocost} {
			c[0] += len(sys)
			c[1] -= len(sys)
		}
	}
	h := newHistoryCosts(cost, ocost, n, stepMessages(f))
	if pol.Policy == HistoryStrict {
		if hist := h.full[n]; pol.MaxTokens > 0 && hist > pol.MaxTokens {
			return fitted{}, &RequestError{Field: "history", Code: "context_length_exceeded", Msg: fmt.Sprintf(
				"The history takes %d tokens, over its max_tokens of %d under the strict history policy. Shorten the history or use the window policy.",
				hist, pol.MaxTokens)}
		}
		return whole()
	}
	capped := math.MaxInt
	if pol.MaxTokens > 0 {
		capped = pol.MaxTokens
	}
	limit := p.cfg.ContextLength - reserve
	w := h.replay(n, limit, capped)
	if w == (window{}) {
		return whole()
	}
	return p.windowed(ctx, memo, windowInput{full: full, omitted: omitted, h: h, n: n, per: stepMessages(f), history: in.History}, w, limit, usage)
}

// windowInput is what windowed renders a window of.
type windowInput struct {
	full, omitted []models.Message
	h             *historyCosts
	n, per        int
	history       []Step
}

// windowed renders and tokenizes the prompt under w. Where the estimate
// was short (a folded system prompt), it compacts further, a page or a
// step a round, and after maxWindowRounds keeps only the current page.
func (p *Planner) windowed(ctx context.Context, memo *tokenMemo, in windowInput, w window, limit int, usage HistoryUsage) (fitted, error) {
	full, omitted, h, n := in.full, in.omitted, in.h, in.n
	total := 0
	for _, c := range memo.order {
		total += len(c)
	}
	for round := 0; ; round++ {
		segs, err := p.cfg.ChatFormat.Render(windowMessages(full, omitted, h, w, n, in.per))
		if err != nil {
			return fitted{}, &FieldError{Field: "history", Msg: err.Error()}
		}
		prompt, err := memo.join(ctx, segs)
		if err != nil {
			return fitted{}, err
		}
		last := w == window{n, n}
		if len(prompt) <= limit || last {
			usage.StepsDropped = w.dropped
			for i := w.dropped; i < w.omitted; i++ {
				if h.saves(i) && in.history[i].Page != "" {
					usage.PagesOmitted++
				}
			}
			usage.DroppedTokens = total - len(prompt)
			return fitted{prompt: prompt, usage: usage}, nil
		}
		switch {
		case round+1 >= maxWindowRounds:
			w = window{n, n}
		case w.omitted < n:
			w.omitted++
		default:
			w.dropped++
		}
	}
}

// newHistoryCosts sums the messages' token counts (cost with every page,
// ocost with every page omitted; the last entry of each is what follows the
// messages) per step of per messages.
func newHistoryCosts(cost, ocost []int, n, per int) *historyCosts {
	h := &historyCosts{full: make([]int, n+1), omit: make([]int, n+1), page: make([]int, n)}
	last := len(cost) - 2 // the current page's message
	h.fixed = cost[0] + cost[last+1]
	h.current = cost[last]
	for i := range n {
		first := 1 + per*i
		full, omit := 0, 0
		for k := first; k < first+per; k++ {
			full += cost[k]
			omit += ocost[k]
		}
		h.page[i] = cost[first]
		// Omitting a page no longer than the marker saves nothing: such a
		// step keeps its page (windowMessages does the same).
		h.full[i+1] = h.full[i] + full
		h.omit[i+1] = h.omit[i] + min(full, omit)
	}
	return h
}

// saves reports whether omitting step i's page saves tokens.
func (h *historyCosts) saves(i int) bool {
	return h.omit[i+1]-h.omit[i] < h.full[i+1]-h.full[i]
}

// omitPages returns full, BuildPrompt's messages with n steps of per
// messages, with every step's page replaced by PageOmitted.
func omitPages(full []models.Message, f Format, n int) []models.Message {
	out := append([]models.Message(nil), full...)
	for i := range n {
		out[1+stepMessages(f)*i].Content = PageOmitted
	}
	return out
}

// windowMessages is the prompt's messages under w: the system message,
// steps from w.dropped on (pages omitted before w.omitted where that
// saves tokens), the current page.
func windowMessages(full, omitted []models.Message, h *historyCosts, w window, n, per int) []models.Message {
	msgs := make([]models.Message, 0, len(full)-per*w.dropped)
	msgs = append(msgs, full[0])
	for i := w.dropped; i < n; i++ {
		src := full
		if i < w.omitted && h.saves(i) {
			src = omitted
		}
		msgs = append(msgs, src[1+per*i:1+per*(i+1)]...)
	}
	return append(msgs, full[len(full)-1])
}

// tokenMemo tokenizes each distinct segment of a request once.
type tokenMemo struct {
	tok models.Tokenizer
	m   map[models.Segment][]int32
	// order is the first prompt's tokens by segment, for its length.
	order [][]int32
}

// tokens returns seg's tokens, tokenizing it on first sight. ctx is
// checked before each tokenization, so a request's deadline bounds the
// work.
func (t *tokenMemo) tokens(ctx context.Context, seg models.Segment) ([]int32, error) {
	if ids, ok := t.m[seg]; ok {
		return ids, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ids, err := t.tok.Tokenize(seg.Text, seg.Special)
	if err != nil {
		return nil, fmt.Errorf("tokenize prompt: %w", err)
	}
	t.m[seg] = ids
	return ids, nil
}

// spans renders msgs in f and returns the segments and the token count of
// each message (and, last, of what follows them).
func (t *tokenMemo) spans(ctx context.Context, f models.ChatFormat, msgs []models.Message) ([]models.Segment, []int, error) {
	segs, ends, err := f.RenderSpans(msgs)
	if err != nil {
		return nil, nil, &FieldError{Field: "history", Msg: err.Error()}
	}
	cost, err := t.costs(ctx, segs, ends)
	return segs, cost, err
}

// costs returns the token count of each message (ends as RenderSpans
// gives them) and, last, of what follows the messages. The first call
// remembers the segments' tokens in order.
func (t *tokenMemo) costs(ctx context.Context, segs []models.Segment, ends []int) ([]int, error) {
	cost := make([]int, len(ends)+1)
	first := t.order == nil
	m := 0
	for k, seg := range segs {
		ids, err := t.tokens(ctx, seg)
		if err != nil {
			return nil, err
		}
		if first {
			t.order = append(t.order, ids)
		}
		for m < len(ends) && k >= ends[m] {
			m++
		}
		cost[m] += len(ids)
	}
	return cost, nil
}

// join returns the tokens of segs end to end.
func (t *tokenMemo) join(ctx context.Context, segs []models.Segment) ([]int32, error) {
	var prompt []int32
	for _, seg := range segs {
		ids, err := t.tokens(ctx, seg)
		if err != nil {
			return nil, err
		}
		prompt = append(prompt, ids...)
	}
	return prompt, nil
}
