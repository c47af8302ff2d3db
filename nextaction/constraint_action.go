package nextaction

import (
	"container/list"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sync/singleflight"
)

// Limits bound what the action decoder may write.
type Limits struct {
	// MaxRationaleBytes bounds the rationale of the prompted format (the
	// fine-tuned format's rationale is bounded by max_tokens alone).
	MaxRationaleBytes int
	// MaxTextBytes bounds the text of type_and_submit.
	MaxTextBytes int
}

// DefaultLimits are the server's defaults.
var DefaultLimits = Limits{MaxRationaleBytes: 1000, MaxTextBytes: 100}

// actionPart is the action object: {"type":...} over this page's names.
func actionPart(b *builder, clickables, inputs []string, maxText int) part {
	alts := []part{b.lit(`terminate"}`)}
	if len(clickables) > 0 {
		alts = append(alts, b.seq(b.lit(`click","name":"`), b.oneOf(clickables), b.lit(`"}`)))
	}
	if len(inputs) > 0 {
		alts = append(alts, b.seq(b.lit(`type_and_submit","name":"`), b.oneOf(inputs),
			b.lit(`","text":"`), b.free(1, maxText), b.lit(`"}`)))
	}
	return b.seq(b.lit(`{"type":"`), b.alt(alts...))
}

// ActionGrammar is the grammar of one answer on a page: for the prompted
// format the object {"rationale":"...","action":{...}} (the rationale first,
// so the model reasons before it acts), for the fine-tuned format the action
// object alone.
func ActionGrammar(p *Page, f Format, l Limits) (*Grammar, error) {
	if l.MaxTextBytes < 1 || l.MaxRationaleBytes < 0 {
		return nil, errors.New("action grammar: limits must be positive")
	}
	b := &builder{}
	act := actionPart(b, p.Clickables(), p.Inputs(), l.MaxTextBytes)
	switch f {
	case FormatPrompted:
		return b.compile(b.seq(b.lit(`{"rationale":"`), b.free(0, l.MaxRationaleBytes), b.lit(`","action":`), act, b.lit(`}`)))
	case FormatFinetuned:
		return b.compile(act)
	}
	return nil, fmt.Errorf("action grammar: unknown format %q", f)
}

// GrammarCache keeps compiled grammars by page element set, format and
// limits (actions) or by schema text (structured outputs), least recently
// used first out, within a bound on the bytes they hold (their nodes and
// keys), not on their count: one grammar can be a thousand times another.
// A grammar larger than the whole bound is compiled and used but not kept.
// Concurrent misses on one key compile it once. Goroutine-safe.
type GrammarCache struct {
	maxBytes int64
	flight   singleflight.Group

	mu           sync.Mutex
	bytes        int64
	ll           *list.List
	items        map[string]*list.Element
	hits, misses uint64
}

type cacheEntry struct {
	key   string
	g     *Grammar
	bytes int64
}

// DefaultGrammarCacheBytes is the server's grammar cache bound.
const DefaultGrammarCacheBytes = 64 << 20

// NewGrammarCache holds grammars of up to maxBytes in all
// (DefaultGrammarCacheBytes when not positive).
func NewGrammarCache(maxBytes int64) *GrammarCache {
	if maxBytes <= 0 {
		maxBytes = DefaultGrammarCacheBytes
	}
	return &GrammarCache{maxBytes: maxBytes, ll: list.New(), items: map[string]*list.Element{}}
}

// Action returns the page's grammar, compiling it on a miss.
func (c *GrammarCache) Action(p *Page, f Format, l Limits) (*Grammar, error) {
	key := fmt.Sprintf("action|%s|%d|%d|%s", f, l.MaxRationaleBytes, l.MaxTextBytes, p.Key())
	return c.get(key, func() (*Grammar, error) { return ActionGrammar(p, f, l) })
}

// Schema returns the grammar of a JSON schema (nil schema: any JSON
// object) compiled under l, compiling it on a miss. A schema over a limit
// is a *LimitError and is not cached.
func (c *GrammarCache) Schema(schema []byte, l SchemaLimits) (*Grammar, error) {
	if schema == nil {
		return c.get("json_object", JSONObjectGrammar)
	}
	if l = l.withDefaults(); len(schema) > l.MaxBytes {
		// Refused before the text is copied into a key.
		return nil, &LimitError{Limit: LimitSchemaBytes, Max: l.MaxBytes, Got: len(schema), Path: "#"}
	}
	return c.get("schema|"+string(schema), func() (*Grammar, error) { return CompileSchema(schema, l) })
}

func (c *GrammarCache) get(key string, compile func() (*Grammar, error)) (*Grammar, error) {
	c.mu.Lock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		c.hits++
		c.mu.Unlock()
		return e.Value.(*cacheEntry).g, nil
	}
	c.misses++
	c.mu.Unlock()
	v, err, _ := c.flight.Do(key, func() (any, error) {
		// A miss that reaches here after another compiled the key finds
		// it cached: misses of one key compile it once.
		c.mu.Lock()
		if e, ok := c.items[key]; ok {
			c.mu.Unlock()
			return e.Value.(*cacheEntry).g, nil
		}
		c.mu.Unlock()
		g, err := compile()
		if err == nil {
			c.put(key, g)
		}
		return g, err
	})
	if err != nil {
		return nil, err
	}
	return v.(*Grammar), nil
}

// put keeps g under key, evicting the least recently used grammars until
// the bound holds.
func (c *GrammarCache) put(key string, g *Grammar) {
	size := g.Bytes() + int64(len(key)) + cacheEntryOverhead
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[key]; ok || size > c.maxBytes {
		return
	}
	c.items[key] = c.ll.PushFront(&cacheEntry{key: key, g: g, bytes: size})
	c.bytes += size
	for c.bytes > c.maxBytes {
		old := c.ll.Back()
		e := old.Value.(*cacheEntry)
		c.ll.Remove(old)
		delete(c.items, e.key)
		c.bytes -= e.bytes
	}
}

// cacheEntryOverhead approximates an entry's list element and map slot.
const cacheEntryOverhead = 128

// Stats returns the cache's hits and misses.
func (c *GrammarCache) Stats() (hits, misses uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses
}

// Size returns the grammars held and the bytes they count for.
func (c *GrammarCache) Size() (entries int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len(), c.bytes
}

// FinetunedConstraint decodes the fine-tuned format in one sequence: the
// rationale as free text up to the model's end of turn, then the fixed
// end-of-rationale turn (forced, never sampled), then the action under the
// page's grammar.
type FinetunedConstraint struct {
	v         *Vocab
	action    *ByteConstraint
	interlude []int32 // interlude[0] ends the rationale turn; the rest is forced
	inAction  bool
	rationale []byte
	forced    []int32
}

// NewFinetunedConstraint needs the interlude: the tokens from the end of the
// rationale turn to the start of the action turn (see Interlude).
func NewFinetunedConstraint(v *Vocab, action *Grammar, interlude []int32) (*FinetunedConstraint, error) {
	if len(interlude) == 0 {
		return nil, errors.New("finetuned constraint: empty interlude")
	}
	return &FinetunedConstraint{v: v, action: NewByteConstraint(v, action), interlude: interlude}, nil
}

// MinTokens: the end of turn, the forced interlude, the shortest action.
func (c *FinetunedConstraint) MinTokens() int { return len(c.interlude) + c.action.MinTokens() }

// Mask allows, in the rationale, any ordinary token or the end of turn;
// once the budget only covers the rest, the end of turn alone.
func (c *FinetunedConstraint) Mask(logits []float32, remaining int) error {
	if c.inAction {
		return c.action.Mask(logits, remaining)
	}
	end := c.interlude[0]
	if remaining-1 < c.MinTokens() {
		keep := logits[end]
		for i := range logits {
			logits[i] = negInf
		}
		logits[end] = keep
		return nil
	}
	for i := range logits {
		if c.v.special[i] && int32(i) != end {
			logits[i] = negInf
		}
	}
	return nil
}

// Allows reports whether Mask would keep tok.
func (c *FinetunedConstraint) Allows(tok int32, remaining int) bool {
	if c.inAction {
		return c.action.Allows(tok, remaining)
	}
	if tok < 0 || int(tok) >= len(c.v.special) {
		return false
	}
	if tok == c.interlude[0] {
		return true
	}
	return !c.v.special[tok] && remaining-1 >= c.MinTokens()
}

// Accept records rationale text or switches to the action at the end of
// turn.
func (c *FinetunedConstraint) Accept(tok int32) (bool, error) {
	if c.inAction {
		return c.action.Accept(tok)
	}
	if tok == c.interlude[0] {
		c.inAction = true
		c.forced = append(append(c.forced, c.interlude[1:]...), c.action.Forced()...)
		return c.action.Done(), nil
	}
	if c.v.special[tok] {
		return false, fmt.Errorf("constraint: control token %d in the rationale", tok)
	}
	c.rationale = append(c.rationale, c.v.pieces[tok]...)
	return false, nil
}

// Forced hands out the interlude and the action's literal runs.
func (c *FinetunedConstraint) Forced() []int32 {
	if c.inAction && len(c.forced) == 0 {
		return c.action.Forced()
	}
	f := c.forced
	c.forced = nil
	return f
}

// Done reports whether the action is complete.
func (c *FinetunedConstraint) Done() bool { return c.inAction && c.action.Done() }

// Rationale is the rationale turn's text.
func (c *FinetunedConstraint) Rationale() string { return string(c.rationale) }

// ActionJSON is the action object's bytes.
func (c *FinetunedConstraint) ActionJSON() []byte { return c.action.Output() }
