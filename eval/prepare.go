package eval

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/nextact/nextact/nextaction"
)

// Budget are the limits every request is prepared to: the same for every
// target of a run, so that all targets see the same inputs.
type Budget struct {
	// MaxPageBytes bounds each page (nextact's --max-page-bytes).
	MaxPageBytes int
	// Ctx is the target's context, in tokens, and MaxTokens the answer's
	// budget: the prompt gets Ctx - MaxTokens tokens, less
	// TemplateTokens for the chat template.
	Ctx, MaxTokens int
	// BytesPerToken converts the prompt's token budget to bytes. 1 is
	// safe for byte-level BPE and SentencePiece tokenizers (every token
	// covers at least one byte); more lets pages keep more, at the risk of
	// a request over the context.
	BytesPerToken float64
	// MaxPersonaBytes bounds the persona (cut at a character boundary).
	MaxPersonaBytes int
	// MaxBodyBytes bounds a request's JSON body (nextact's --body-limit):
	// a case whose body could exceed it is not sent.
	MaxBodyBytes int
	// Rationales sends the history's recorded rationales (else each is
	// left out, as a step without one).
	Rationales bool
}

// Template overhead, in tokens: a fixed part (start of text, the
// generation prompt) and a part per message (role markers, end of turn),
// both generous for the Llama 3, ChatML and Mistral templates.
const (
	templateBaseTokens       = 32
	templateTokensPerMessage = 10
	// messagesPerStep is the fine-tuned format's (the prompted one has 2).
	messagesPerStep = 4
	// MinPageBytes is the least room a current page is given; a case with
	// less is not sent.
	MinPageBytes = 256
)

// CaseReduction is what the reduction policy did to one case's inputs.
type CaseReduction struct {
	// Page is the stage the current page was reduced to: none, text or cap
	// (nextaction.ReduceStage); PageBytes its size as sent.
	Page      string `json:"page"`
	PageBytes int    `json:"page_bytes"`
	// ElementsDropped counts the current page's named elements the cap
	// left out; Flat that it was written as a flat list.
	ElementsDropped int  `json:"elements_dropped,omitempty"`
	Flat            bool `json:"flat,omitempty"`
	// TruthCut: the truth's element is among those left out.
	TruthCut bool `json:"truth_cut,omitempty"`
	// HistoryPagesReduced counts history pages sent reduced;
	// HistoryPagesOmitted those replaced by "(page omitted)";
	// HistoryStepsDropped the oldest steps left out altogether.
	HistoryPagesReduced int  `json:"history_pages_reduced,omitempty"`
	HistoryPagesOmitted int  `json:"history_pages_omitted,omitempty"`
	HistoryStepsDropped int  `json:"history_steps_dropped,omitempty"`
	PersonaCut          bool `json:"persona_cut,omitempty"`
	// NotSent says why no request could fit.
	NotSent string `json:"not_sent,omitempty"`
}

// Prepared is a case's inputs as sent.
type Prepared struct {
	Page    string
	History []nextaction.Step
	Persona string
	Red     CaseReduction
}

// Preparer applies the reduction policy (docs/EVAL.md) to cases. It
// reduces each page to MaxPageBytes once and keeps it. Safe for concurrent
// use.
type Preparer struct {
	b     Budget
	mu    sync.Mutex
	pages map[string]*reducedPage // by case id of the step
}

type reducedPage struct {
	once sync.Once
	html string
	red  nextaction.Reduction
	err  error
}

// NewPreparer returns a preparer for b.
func NewPreparer(b Budget) *Preparer {
	return &Preparer{b: b, pages: map[string]*reducedPage{}}
}

// page returns step index of session's page reduced to MaxPageBytes.
func (p *Preparer) page(session string, index int, html string) (string, nextaction.Reduction, error) {
	key := CaseID(session, index)
	p.mu.Lock()
	e := p.pages[key]
	if e == nil {
		e = &reducedPage{}
		p.pages[key] = e
	}
	p.mu.Unlock()
	e.once.Do(func() { e.html, e.red, e.err = nextaction.ReducePage(html, p.b.MaxPageBytes) })
	return e.html, e.red, e.err
}

// promptBytes is the prompt's byte budget with h history steps.
func (p *Preparer) promptBytes(h int) int {
	msgs := 2 + messagesPerStep*h
	tokens := p.b.Ctx - p.b.MaxTokens - templateBaseTokens - templateTokensPerMessage*msgs
	return int(float64(tokens) * p.b.BytesPerToken)
}

// Prepare applies the policy to c:
//
//  1. Every page is reduced to MaxPageBytes (nextaction.ReducePage).
//  2. The persona is cut to MaxPersonaBytes.
//  3. The oldest history steps are dropped while the history's actions and
//     rationales (pages aside) take more than half of the budget the
//     system prompt leaves.
//  4. The current page is reduced to the budget left (at least
//     MinPageBytes, else the case is not sent).
//  5. History pages are put back newest first while they fit; the first
//     that does not fit whole is reduced to the room left (when that is at
//     least MinPageBytes), and the older ones are omitted.
//
// A current page that does not parse (nextaction.ParsePage) is an error:
// the case cannot be sent. A history page that does not parse is omitted.
//
// Sizes are the larger of the two prompt formats'.
func (p *Preparer) Prepare(c *Case) (Prepared, error) {
	var out Prepared
	out.Persona, out.Red.PersonaCut = cutString(c.Persona, p.b.MaxPersonaBytes)
	fixed, err := systemBytes(out.Persona)
	if err != nil {
		return out, err
	}
	hist := make([]nextaction.Step, len(c.History))
	rest := make([]int, len(c.History)) // a step's bytes without its page
	restSum := 0
	for i, st := range c.History {
		hist[i] = nextaction.Step{Action: st.Action}
		if p.b.Rationales {
			hist[i].Rationale = st.Rationale
		}
		rest[i] = stepBytes(hist[i])
		restSum += rest[i]
	}
	first := 0 // the oldest step kept
	for first < len(hist) && restSum > (p.promptBytes(len(hist)-first)-fixed)/2 {
		restSum -= rest[first]
		first++
	}
	out.Red.HistoryStepsDropped = first
	hist, kept := hist[first:], c.History[first:]
	budget := p.promptBytes(len(hist))

	page, red, err := p.page(c.SessionID, c.Index, c.Page)
	if err != nil {
		return out, err
	}
	room := budget - fixed - restSum
	if room < MinPageBytes {
		out.Red.NotSent = fmt.Sprintf("the prompt budget of %d bytes leaves %d for the page, under %d", budget, max(room, 0), MinPageBytes)
		return out, nil
	}
	if len(page) > room {
		if page, red, err = nextaction.ReducePage(c.Page, room); err != nil {
			return out, err
		}
	}
	if red.Stage == nextaction.ReduceNone && mayNotParse(page) { // a reduced page was parsed already
		if _, err := nextaction.ParsePage(page); err != nil {
			return out, err
		}
	}
	out.Page = page
	out.Red.Page, out.Red.PageBytes = red.Stage.String(), len(page)
	out.Red.ElementsDropped, out.Red.Flat = red.ElementsDropped, red.Flat
	if red.ElementsDropped > 0 && c.Truth.Name != "" {
		out.Red.TruthCut = hasTarget(c.Page, c.Truth.Name) && !hasTarget(page, c.Truth.Name)
	}
	room -= len(page)
	// History pages, newest first. A page replaces "(page omitted)", which
	// the step's bytes already count.
	omit := false
	for i := len(hist) - 1; i >= 0; i-- {
		switch {
		case kept[i].Page == "":
			continue
		case omit:
			out.Red.HistoryPagesOmitted++
			continue
		}
		hp, hred, err := p.page(c.SessionID, first+i, kept[i].Page)
		if avail := room + len(nextaction.PageOmitted); err == nil && len(hp) > avail {
			if avail < MinPageBytes {
				omit = true
				out.Red.HistoryPagesOmitted++
				continue
			}
			hp, hred, err = nextaction.ReducePage(kept[i].Page, avail)
		}
		if err != nil { // a history page that does not parse is omitted
			out.Red.HistoryPagesOmitted++
			continue
		}
		hist[i].Page = hp
		room -= len(hp) - len(nextaction.PageOmitted)
		if hred.Stage != nextaction.ReduceNone {
			out.Red.HistoryPagesReduced++
		}
	}
	out.History = hist
	if n := bodyBound(out, fixed); n > p.b.MaxBodyBytes {
		out.Red.NotSent = fmt.Sprintf("the request body may take %d bytes, over the limit of %d", n, p.b.MaxBodyBytes)
	}
	return out, nil
}

// bodyBound bounds the JSON body of a request of p in either API: every
// text JSON-escaped, the system prompt (fixed bytes, in the chat API) and
// room for the keys.
func bodyBound(p Prepared, fixed int) int {
	n := 4096 + jsonLen(p.Page) + 2*fixed
	for _, h := range p.History {
		n += 256 + jsonLen(h.Page) + 2*jsonLen(h.Rationale) + 2*jsonLen(h.Action.Name) + 2*jsonLen(h.Action.Text)
	}
	return n
}

// jsonLen is the length of s as json.Marshal writes it (quoted, with
// <, >, & and U+2028/U+2029 escaped, invalid UTF-8 replaced).
func jsonLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			n += 6 // \ufffd
		case r == '\u2028' || r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}

// mayNotParse reports whether doc could be refused by ParsePage, whose
// HTML parser fails only when its stack of open elements exceeds 512. Each
// tag (a '<') pushes at most three elements (a td outside a table row
// brings tbody and tr) and may be reconstructed once more as an active
// formatting element, so a page with at most 120 '<' always parses, and
// the parse is skipped.
func mayNotParse(doc string) bool { return strings.Count(doc, "<") > 120 }

// hasTarget reports whether doc has a clickable or input named name.
func hasTarget(doc, name string) bool {
	p, err := nextaction.ParsePage(doc)
	return err == nil && (p.Has(name, nextaction.Clickable) || p.Has(name, nextaction.Input))
}

// systemBytes is the larger of the two formats' system prompts.
func systemBytes(persona string) (int, error) {
	n := 0
	for _, f := range []nextaction.Format{nextaction.FormatPrompted, nextaction.FormatFinetuned} {
		msgs, err := nextaction.BuildPrompt(f, nextaction.PromptInput{Page: "x", Persona: persona})
		if err != nil {
			return 0, err
		}
		n = max(n, len(msgs[0].Content))
	}
	return n, nil
}

// stepBytes is a history step's bytes in the larger of the two formats,
// with its page omitted.
func stepBytes(s nextaction.Step) int {
	r := s.Rationale
	if r == "" {
		r = nextaction.RationaleOmitted
	}
	prompted := len(nextaction.PromptedOutput(r, s.Action))
	finetuned := len(r) + len(nextaction.EndOfRationale) + len(s.Action.JSON())
	return len(nextaction.PageOmitted) + max(prompted, finetuned)
}

// cutString cuts s to at most max bytes at a character boundary.
func cutString(s string, max int) (string, bool) {
	if len(s) <= max {
		return s, false
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i], true
}
