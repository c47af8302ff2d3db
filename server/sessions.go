package server

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/sessionstore"
)

// Sessions keep a shopper's history on the server: POST /v1/sessions opens
// one, POST /v1/sessions/{id}/steps asks for the next action on a page and
// appends {page, action, rationale} to the history, GET returns the
// session, DELETE ends it. A step's prompt is exactly the prompt of POST
// /v1/actions/next with the stored history and the session's history
// policy resent, so both APIs answer alike (the history window,
// nextaction/window.go, depends on the request alone).
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
	history nextaction.HistoryPolicy // normalized
	created time.Time
	lease   string // the step's lease owner in a shared store

	lastUsed time.Time
	busy     bool // a step is in flight
	steps    []nextaction.Step
	bytes    int64 // persona and history text held, for the metrics
}

// sessionKeeper is where the server keeps sessions: in this process
// (sessionStore, with an optional write-through store) or in a store that
// several replicas share (sharedSessions, sessionshared.go).
type sessionKeeper interface {
	// add opens sess (id, model, format, persona and policy set).
	add(sess *session) (sessionObject, error)
	// view returns a session and restarts its TTL.
	view(id string) (sessionObject, error)
	// begin starts a step: the session and the history it builds on.
	begin(id string, pageBytes int, limit func(ctxLen int) int64) (*session, []nextaction.Step, error)
	// end finishes a step begun, recording step unless nil.
	end(sess *session, step *nextaction.Step) error
	// remove deletes a session.
	remove(id string) (string, error)
	// held is the sessions and text held, for the metrics.
	held() (int, int64)
	// sweep drops expired sessions.
	sweep()
	// close refuses new sessions and stops background work. Idempotent.
	close()
}

var (
	_ sessionKeeper = (*sessionStore)(nil)
	_ sessionKeeper = (*sharedSessions)(nil)
)

// sessionStore holds the open sessions and sweeps the expired ones. With
// a backend (sessionpersist.go) it writes every change through to it; the
// memory stays the source of truth of this process.
type sessionStore struct {
	ttl     time.Duration
	max     int
	now     func() time.Time
	backend SessionStore // nil: memory only
	log     *zap.Logger

	mu      sync.Mutex
	byID    map[string]*session
	bytes   int64 // sum of the sessions' bytes
	sweeper bool  // the janitor runs
	closed  bool
	stop    chan struct{}
	done    chan struct{}
	// gone are sessions dropped under the lock, to delete from the
	// backend once it is released (unlock).
	gone []string
}

func newSessionStore(ttl time.Duration, limit int, now func() time.Time, backend SessionStore, log *zap.Logger) *sessionStore {
	return &sessionStore{ttl: ttl, max: limit, now: now, backend: backend, log: log, byID: map[string]*session{},
		stop: make(chan struct{}), done: make(chan struct{})}
}

// unlock releases the mutex, then deletes the sessions dropped under it
// from the backend.
func (st *sessionStore) unlock() {
	gone := st.gone
	st.gone = nil
	st.mu.Unlock()
	st.forget(gone)
}

// expiredLocked reports whether sess has been idle for the TTL at now.
func (st *sessionStore) expiredLocked(sess *session, now time.Time) bool {
	return !sess.busy && !now.Before(sess.lastUsed.Add(st.ttl))
}

// add stores a new session, or refuses it when MaxSessions are open. The
// janitor starts with the first session, so a server that never opens one
// runs no goroutine for them.
// With a backend the session is stored before it is answered; a failure
// takes it back (503).
func (st *sessionStore) add(sess *session) (sessionObject, error) {
	obj, err := st.addMemory(sess)
	if err != nil || st.backend == nil {
		return obj, err
	}
	ctx, cancel := storeCtx()
	defer cancel()
	if err := st.backend.Create(ctx, sess.record()); err != nil {
		st.mu.Lock()
		if st.byID[sess.id] == sess {
			st.dropLocked(sess)
		}
		st.mu.Unlock()
		return sessionObject{}, storeFailure(st.log, "create", err)
	}
	return obj, nil
}

func (st *sessionStore) addMemory(sess *session) (sessionObject, error) {
	st.mu.Lock()
	defer st.unlock()
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
		return nil, sessionNotFound(id, st.ttl)
	}
	return sess, nil
}

// sessionNotFound is the 404 of an unknown, deleted or expired session.
func sessionNotFound(id string, ttl time.Duration) error {
	return &requestError{notFound: true, code: "session_not_found",
		msg: fmt.Sprintf("No session %q: it never existed, was deleted, or expired after being idle for %s.", strings.Clone(id), ttl)}
}

// sessionBusy is the 409 of a step while another runs.
func sessionBusy(id string) error {
	return &requestError{conflict: true, code: "session_busy",
		msg: fmt.Sprintf("Session %q is already running a step; send one step at a time.", strings.Clone(id))}
}

// checkSessionBytes is the 413 of a step whose page would take the session
// past its limit.
func checkSessionBytes(sess *session, pageBytes int, limit func(ctxLen int) int64) error {
	if lim := limit(sess.ctxLen); sess.bytes+int64(pageBytes) > lim {
		return tooLarge("page", "session_too_large",
			"The session's persona and history (%d bytes) with this page (%d bytes) exceed the session limit of %d bytes: start a new session.",
			sess.bytes, pageBytes, lim)
	}
	return nil
}

// view returns the session as GET shows it and restarts its TTL.
func (st *sessionStore) view(id string) (sessionObject, error) {
	st.mu.Lock()
	defer st.unlock()
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
	defer st.unlock()
	now := st.now()
	sess, err := st.lookupLocked(id, now)
	if err != nil {
		return nil, nil, err
	}
	if sess.busy {
		return nil, nil, sessionBusy(sess.id)
	}
	if err := checkSessionBytes(sess, pageBytes, limit); err != nil {
		return nil, nil, err
	}
	sess.busy = true
	sess.lastUsed = now
	return sess, sess.steps[:len(sess.steps):len(sess.steps)], nil
}

// end finishes the step begun on sess, appending step when it succeeded
// (nil when it failed). A session deleted meanwhile stays deleted. With a
// backend the step is stored first (the session is busy meanwhile, so its
// steps are stored in order); when that fails the step is not recorded and
// the error (a 503) is returned.
func (st *sessionStore) end(sess *session, step *nextaction.Step) error {
	now := st.now()
	var err error
	if step != nil && st.backend != nil {
		st.mu.Lock()
		live, index := st.byID[sess.id] == sess, len(sess.steps)
		st.mu.Unlock()
		if live {
			ctx, cancel := storeCtx()
			err = st.backend.Append(ctx, sess.id, index, *step, now)
			cancel()
			if errors.Is(err, sessionstore.ErrNotFound) {
				err = nil // deleted meanwhile
			}
			if err = storeFailure(st.log, "append", err); err != nil {
				step = nil
			}
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	sess.busy = false
	sess.lastUsed = now
	if step != nil && st.byID[sess.id] == sess {
		sess.steps = append(sess.steps, *step)
		n := stepBytes(*step)
		sess.bytes += n
		st.bytes += n
	}
	return err
}

// remove ends a session; an unknown or expired one is a 404.
func (st *sessionStore) remove(id string) (string, error) {
	st.mu.Lock()
	defer st.unlock()
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
	if st.backend != nil {
		st.gone = append(st.gone, sess.id)
	}
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
	defer st.unlock()
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
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Format  string `json:"format"`
	Persona string `json:"persona"`
	// History is the session's history policy.
	History   nextaction.HistoryPolicy `json:"history"`
	Created   int64                    `json:"created"`
	ExpiresAt int64                    `json:"expires_at"`
	Steps     []nextaction.Step        `json:"steps"`
}

func (st *sessionStore) objectLocked(sess *session) sessionObject { return sess.object(st.ttl) }

// object is sess as the API shows it, expiring ttl after its last use.
func (sess *session) object(ttl time.Duration) sessionObject {
	return sessionObject{
		ID: sess.id, Object: "session", Model: sess.model, Format: string(sess.format), Persona: sess.persona, History: sess.history,
		Created: sess.created.Unix(), ExpiresAt: sess.lastUsed.Add(ttl).Unix(),
		Steps: append([]nextaction.Step{}, sess.steps...),
	}
}

// createSessionRequest is the body of POST /v1/sessions.
type createSessionRequest struct {
	Model   string `json:"model"`
	Persona string `json:"persona"`
	// Format is "prompted" or "finetuned"; empty: the model's default.
	Format string `json:"format"`
	// History is the history policy of every step (the window when
	// absent).
	History *nextaction.HistoryPolicy `json:"history"`
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
	_, cancel := s.requestContext(c) // bounds the wait for the model's load
	defer cancel()
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
	var pol nextaction.HistoryPolicy
	if req.History != nil {
		pol = *req.History
	}
	if pol, err = pol.Normalize("history"); err != nil {
		return err
	}
	if limit := s.sessionLimit(m.ContextLength); int64(len(req.Persona)) > limit {
		return tooLarge("persona", "session_too_large", "The persona has %d bytes, over the session limit of %d bytes.", len(req.Persona), limit)
	}
	sess := &session{id: sessionIDPrefix + rand.Text(), model: m.ID, ctxLen: m.ContextLength, format: format, persona: req.Persona, history: pol}
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
	ctx, cancel := s.requestContext(c)
	defer cancel()
	var req stepRequest
	if err := decodeJSON(c.Body(), &req); err != nil {
		return err
	}
	sess, history, err := s.sessions.begin(c.Params("id"), len(req.Page), s.sessionLimit)
	if err != nil {
		return err
	}
	// The step ends however the handler leaves, a panic included: a
	// session must never stay busy. A step that succeeded ends below, so
	// that a store failure is the answer.
	ended := false
	defer func() {
		if !ended {
			_ = s.sessions.end(sess, nil)
		}
	}()
	m, release, err := s.actionModel(c, sess.model)
	if err != nil {
		return err
	}
	defer release()
	resp, err := s.runAction(ctx, c, m, &nextaction.NextActionRequest{
		Model: m.ID, Page: req.Page, History: history, Persona: sess.persona,
		Format: string(sess.format), Temperature: req.Temperature, Seed: req.Seed, MaxTokens: req.MaxTokens,
		HistoryPolicy: &sess.history,
	}, start)
	if err != nil {
		return err
	}
	ended = true
	if err := s.sessions.end(sess, &nextaction.Step{Page: req.Page, Action: resp.Action, Rationale: resp.Rationale}); err != nil {
		return err
	}
	return c.JSON(resp)
}

// contextOf reports the context length of a model the server serves, by
// ID (from the source's listing: the model need not be loaded).
func (s *Server) contextOf(id string) (int, bool) {
	for _, st := range s.source.List() {
		if st.ID == id {
			return st.ContextLength, true
		}
	}
	return 0, false
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
