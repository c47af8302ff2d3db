package server

import (
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/nextact/nextact/nextaction"
)

// Sessions keep a shopper's history on the server: POST /v1/sessions opens
// one, POST /v1/sessions/{id}/steps asks for the next action on a page and
// appends {page, action, rationale} to the history, GET returns the
// session, DELETE ends it. A step's prompt is exactly the prompt of POST
// /v1/actions/next with the stored history resent, so both APIs answer
// alike.
//
// A session lives while it is used: each step or GET restarts its idle
// TTL; a session idle for the TTL is gone (404), whether a janitor swept it
// or an access found it expired first. A session with a step in flight is
// never idle. Two steps at once on one session: the second is a 409 at
// once. Creating a session beyond MaxSessions is a 503 with Retry-After:
// the limit is the server's capacity, shared by every client, not a
// client's rate.

// Defaults for zero session Config fields.
const (
	DefaultSessionTTL  = 30 * time.Minute
	DefaultMaxSessions = 10000
	// maxSweepInterval caps the janitor's period (TTL/4 otherwise).
	maxSweepInterval = time.Minute
	minSweepInterval = 10 * time.Millisecond
	sessionIDPrefix  = "sess_"
)

// session is one open session. The store's mutex guards lastUsed, busy and
// steps; the rest never changes.
type session struct {
	id string
	// model is the ID of the model the session pins (each step acquires
	// it); ctxLen its context length, which bounds the session's text.
	model   string
	ctxLen  int
	format  nextaction.Format
	persona string
	created time.Time

	lastUsed time.Time
	busy     bool // a step is in flight
	steps    []nextaction.Step
	bytes    int64 // persona and history text held, for the metrics
}

// sessionStore holds the open sessions and sweeps the expired ones.
type sessionStore struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	byID    map[string]*session
	bytes   int64 // sum of the sessions' bytes
	sweeper bool  // the janitor runs
	closed  bool
	stop    chan struct{}
	done    chan struct{}
}

func newSessionStore(ttl time.Duration, limit int, now func() time.Time) *sessionStore {
	return &sessionStore{ttl: ttl, max: limit, now: now, byID: map[string]*session{},
		stop: make(chan struct{}), done: make(chan struct{})}
}

// expiredLocked reports whether sess has been idle for the TTL at now.
func (st *sessionStore) expiredLocked(sess *session, now time.Time) bool {
	return !sess.busy && !now.Before(sess.lastUsed.Add(st.ttl))
}

// add stores a new session, or refuses it when MaxSessions are open. The
// janitor starts with the first session, so a server that never opens one
// runs no goroutine for them.
func (st *sessionStore) add(sess *session) (sessionObject, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return sessionObject{}, errShuttingDown
	}
	now := st.now()
	if len(st.byID) >= st.max {
		st.sweepLocked(now)
	}
	if len(st.byID) >= st.max {
		return sessionObject{}, &sessionLimitError{max: st.max, retryAfter: st.nextExpiryLocked(now)}
	}
	sess.created, sess.lastUsed = now, now
	sess.bytes = int64(len(sess.persona))
	st.byID[sess.id] = sess
	st.bytes += sess.bytes
	if !st.sweeper {
		st.sweeper = true
		go st.janitor()
	}
	return st.objectLocked(sess), nil
}

// nextExpiryLocked is how long until the first idle session expires; the
// TTL when every session is busy; at least a second.
func (st *sessionStore) nextExpiryLocked(now time.Time) time.Duration {
	wait := st.ttl
	for _, sess := range st.byID {
		if !sess.busy {
			wait = min(wait, sess.lastUsed.Add(st.ttl).Sub(now))
		}
	}
	return max(wait, time.Second)
}

// lookupLocked finds a live session; an expired one is removed. Unknown
// and expired sessions are both a 404.
func (st *sessionStore) lookupLocked(id string, now time.Time) (*session, error) {
	sess := st.byID[id]
	if sess != nil && st.expiredLocked(sess, now) {
		st.dropLocked(sess)
		sess = nil
	}
	if sess == nil {
		return nil, &requestError{notFound: true, code: "session_not_found",
			msg: fmt.Sprintf("No session %q: it never existed, was deleted, or expired after being idle for %s.", strings.Clone(id), st.ttl)}
	}
	return sess, nil
}

// view returns the session as GET shows it and restarts its TTL.
func (st *sessionStore) view(id string) (sessionObject, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	sess, err := st.lookupLocked(id, now)
	if err != nil {
		return sessionObject{}, err
	}
	sess.lastUsed = now
	return st.objectLocked(sess), nil
}

// begin marks a step on a page of pageBytes in flight and returns the
// history it builds on (which no one changes until end). A session already
// stepping is a 409; one whose persona, history and new page would exceed
// its limit (limit of its model) a 413.
func (st *sessionStore) begin(id string, pageBytes int, limit func(ctxLen int) int64) (*session, []nextaction.Step, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	sess, err := st.lookupLocked(id, now)
	if err != nil {
		return nil, nil, err
	}
	if sess.busy {
		return nil, nil, &requestError{conflict: true, code: "session_busy",
			msg: fmt.Sprintf("Session %q is already running a step; send one step at a time.", sess.id)}
	}
	if lim := limit(sess.ctxLen); sess.bytes+int64(pageBytes) > lim {
		return nil, nil, tooLarge("page", "session_too_large",
			"The session's persona and history (%d bytes) with this page (%d bytes) exceed the session limit of %d bytes: start a new session.",
			sess.bytes, pageBytes, lim)
	}
	sess.busy = true
	sess.lastUsed = now
	return sess, sess.steps[:len(sess.steps):len(sess.steps)], nil
}

// end finishes the step begun on sess, appending step when it succeeded
// (nil when it failed). A session deleted meanwhile stays deleted.
func (st *sessionStore) end(sess *session, step *nextaction.Step) {
	st.mu.Lock()
	defer st.mu.Unlock()
	sess.busy = false
	sess.lastUsed = st.now()
	if step != nil && st.byID[sess.id] == sess {
		sess.steps = append(sess.steps, *step)
		n := int64(len(step.Page) + len(step.Rationale) + len(step.Action.Type) + len(step.Action.Name) + len(step.Action.Text))
		sess.bytes += n
		st.bytes += n
	}
}

// remove ends a session; an unknown or expired one is a 404.
func (st *sessionStore) remove(id string) (string, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	sess, err := st.lookupLocked(id, st.now())
	if err != nil {
		return "", err
	}
	st.dropLocked(sess)
	return sess.id, nil
}

func (st *sessionStore) dropLocked(sess *session) {
	delete(st.byID, sess.id)
	st.bytes -= sess.bytes
}

func (st *sessionStore) sweepLocked(now time.Time) {
	for _, sess := range st.byID {
		if st.expiredLocked(sess, now) {
			st.dropLocked(sess)
		}
	}
}

// sweep removes every expired session.
func (st *sessionStore) sweep() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.sweepLocked(st.now())
}

// held is the number of sessions held and the bytes of text (personas,
// pages, actions, rationales) they keep, expired ones not yet swept
// included.
func (st *sessionStore) held() (int, int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.byID), st.bytes
}

// janitor sweeps every min(TTL/4, a minute) until close.
func (st *sessionStore) janitor() {
	defer close(st.done)
	t := time.NewTicker(max(min(st.ttl/4, maxSweepInterval), minSweepInterval))
	defer t.Stop()
	for {
		select {
		case <-st.stop:
			return
		case <-t.C:
			st.sweep()
		}
	}
}

// close stops the janitor and refuses new sessions; the open ones stay
// readable. Idempotent.
func (st *sessionStore) close() {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return
	}
	st.closed = true
	running := st.sweeper
	close(st.stop)
	st.mu.Unlock()
	if running {
		<-st.done
	}
}

// sessionObject is a session as the API shows it. Steps is the history,
// oldest first: always present, empty for a new session.
type sessionObject struct {
	ID        string            `json:"id"`
	Object    string            `json:"object"`
	Model     string            `json:"model"`
	Format    string            `json:"format"`
	Persona   string            `json:"persona"`
	Created   int64             `json:"created"`
	ExpiresAt int64             `json:"expires_at"`
	Steps     []nextaction.Step `json:"steps"`
}

func (st *sessionStore) objectLocked(sess *session) sessionObject {
	return sessionObject{
		ID: sess.id, Object: "session", Model: sess.model, Format: string(sess.format), Persona: sess.persona,
		Created: sess.created.Unix(), ExpiresAt: sess.lastUsed.Add(st.ttl).Unix(),
		Steps: append([]nextaction.Step{}, sess.steps...),
	}
}

// createSessionRequest is the body of POST /v1/sessions.
type createSessionRequest struct {
	Model   string `json:"model"`
	Persona string `json:"persona"`
	// Format is "prompted" or "finetuned"; empty: the model's default.
	Format string `json:"format"`
}

// stepRequest is the body of POST /v1/sessions/{id}/steps: the fields of
// POST /v1/actions/next that change per step.
type stepRequest struct {
	Page        string   `json:"page"`
	Temperature *float64 `json:"temperature,omitempty"`
	Seed        *uint64  `json:"seed,omitempty"`
	MaxTokens   int      `json:"max_tokens,omitempty"`
}

// createSession answers POST /v1/sessions.
func (s *Server) createSession(c *fiber.Ctx) error {
	ctx, cancel := s.requestContext()
	defer cancel()
	c.SetUserContext(ctx) // bounds the wait for the model's load
	var req createSessionRequest
	if err := decodeJSON(c.Body(), &req); err != nil {
		return err
	}
	m, release, err := s.actionModel(c, req.Model)
	if err != nil {
		return err
	}
	defer release()
	format := m.Actions.DefaultFormat()
	if req.Format != "" {
		if format, err = nextaction.ParseFormat(req.Format); err != nil {
			return invalid("format", "%v", err)
		}
	}
	if limit := s.sessionLimit(m.ContextLength); int64(len(req.Persona)) > limit {
		return tooLarge("persona", "session_too_large", "The persona has %d bytes, over the session limit of %d bytes.", len(req.Persona), limit)
	}
	sess := &session{id: sessionIDPrefix + rand.Text(), model: m.ID, ctxLen: m.ContextLength, format: format, persona: req.Persona}
	obj, err := s.sessions.add(sess)
	if err != nil {
		return err
	}
	return c.JSON(obj)
}

// sessionStep answers POST /v1/sessions/{id}/steps with the next action, in
// the shape of POST /v1/actions/next, and records the step.
func (s *Server) sessionStep(c *fiber.Ctx) error {
	start := s.now()
	ctx, cancel := s.requestContext()
	defer cancel()
	c.SetUserContext(ctx)
	var req stepRequest
	if err := decodeJSON(c.Body(), &req); err != nil {
		return err
	}
	sess, history, err := s.sessions.begin(c.Params("id"), len(req.Page), s.sessionLimit)
	if err != nil {
		return err
	}
	// The step ends however the handler leaves, a panic included: a
	// session must never stay busy.
	var step *nextaction.Step
	defer func() { s.sessions.end(sess, step) }()
	m, release, err := s.actionModel(c, sess.model)
	if err != nil {
		return err
	}
	defer release()
	resp, err := s.runAction(ctx, c, m, &nextaction.NextActionRequest{
		Model: m.ID, Page: req.Page, History: history, Persona: sess.persona,
		Format: string(sess.format), Temperature: req.Temperature, Seed: req.Seed, MaxTokens: req.MaxTokens,
	}, start)
	if err != nil {
		return err
	}
	step = &nextaction.Step{Page: req.Page, Action: resp.Action, Rationale: resp.Rationale}
	return c.JSON(resp)
}

// sessionLimit is the most text a session of a model of ctxLen tokens
// keeps: MaxSessionBytes, or SessionBytesPerToken bytes per token.
func (s *Server) sessionLimit(ctxLen int) int64 {
	if s.cfg.MaxSessionBytes > 0 {
		return int64(s.cfg.MaxSessionBytes)
	}
	return SessionBytesPerToken * int64(ctxLen)
}

// getSession answers GET /v1/sessions/{id}.
func (s *Server) getSession(c *fiber.Ctx) error {
	obj, err := s.sessions.view(c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(obj)
}

// deleteSession answers DELETE /v1/sessions/{id}. A step in flight still
// answers, but its step is not recorded.
func (s *Server) deleteSession(c *fiber.Ctx) error {
	id, err := s.sessions.remove(c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(sessionDeleted{ID: id, Object: "session.deleted", Deleted: true})
}

type sessionDeleted struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Deleted bool   `json:"deleted"`
}
