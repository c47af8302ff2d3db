// Package sessionstore holds what a session store keeps of a shopper
// session (Record), for the server's SessionStore interface and its
// implementations: boltstore, an embedded single-file store.
package sessionstore

import (
	"errors"
	"time"

	"github.com/nextact/nextact/nextaction"
)

// Record is one session as a store keeps it: what a step needs to build
// its prompt (model, format, persona, history policy, history) and the
// TTL's bookkeeping.
type Record struct {
	ID      string                   `json:"id"`
	Model   string                   `json:"model"`
	Format  string                   `json:"format"`
	Persona string                   `json:"persona,omitempty"`
	History nextaction.HistoryPolicy `json:"history"`
	Created time.Time                `json:"created"`
	// LastUsed is when the session's last step ended (or it was
	// created); its idle TTL counts from there.
	LastUsed time.Time `json:"last_used"`
	// Steps is the history, oldest first.
	Steps []nextaction.Step `json:"steps,omitempty"`
}

// ErrNotFound is an append to a session the store does not hold (deleted
// meanwhile).
var ErrNotFound = errors.New("session not found")

// ErrBusy is a lease on a session another replica holds (its step is in
// flight, or its lease has not expired yet).
var ErrBusy = errors.New("session busy on another replica")

// ErrFull is a new session refused because the store holds its maximum.
var ErrFull = errors.New("session store full")

// ErrConflict is an append whose index is not the session's next step:
// another replica appended meanwhile (its lease had expired).
var ErrConflict = errors.New("session changed meanwhile")
