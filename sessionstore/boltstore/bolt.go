// Package boltstore is the embedded session store: one bbolt file (by
// default sessions.db under the cache directory) that outlives the
// process.
//
// Layout: a bucket "sessions" holds one bucket per session id, with the
// key "meta" (the Record without its steps, JSON) and one key per step,
// its index as 8 big-endian bytes (the step, JSON), so a step appends one
// key instead of rewriting the history.
//
// Durability: every call is one read-write transaction, and bbolt fsyncs
// the file at each commit (NoSync stays off): a call that returned is on
// disk and survives SIGKILL and power loss. The file holds a lock: one
// process at a time.
package boltstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/sessionstore"
)

var (
	sessionsBucket = []byte("sessions")
	metaKey        = []byte("meta")
)

// openTimeout bounds the wait for another process's lock on the file.
const openTimeout = 5 * time.Second

// Store is a bbolt-backed session store. Goroutine-safe.
type Store struct {
	db *bolt.DB
}

// Open opens (creating it) the store file at path.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout})
	if err != nil {
		return nil, fmt.Errorf("open session store %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(sessionsBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open session store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file. Idempotent.
func (s *Store) Close() error { return s.db.Close() }

// Path is the store's file.
func (s *Store) Path() string { return s.db.Path() }

// Create stores a new session, its steps included.
func (s *Store) Create(ctx context.Context, rec sessionstore.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(sessionsBucket).CreateBucketIfNotExists([]byte(rec.ID))
		if err != nil {
			return fmt.Errorf("create session: %w", err)
		}
		for i, st := range rec.Steps {
			if err := putStep(b, i, st); err != nil {
				return err
			}
		}
		rec.Steps = nil
		return putJSON(b, metaKey, rec)
	})
}

// Append stores step as step index of session id and moves its LastUsed
// to lastUsed; sessionstore.ErrNotFound when the session is gone.
func (s *Store) Append(ctx context.Context, id string, index int, step nextaction.Step, lastUsed time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(sessionsBucket).Bucket([]byte(id))
		if b == nil {
			return sessionstore.ErrNotFound
		}
		var rec sessionstore.Record
		if err := json.Unmarshal(b.Get(metaKey), &rec); err != nil {
			return fmt.Errorf("session %s: decode: %w", id, err)
		}
		rec.LastUsed = lastUsed
		if err := putStep(b, index, step); err != nil {
			return err
		}
		return putJSON(b, metaKey, rec)
	})
}

// Delete removes the sessions ids; unknown ones are no error.
func (s *Store) Delete(ctx context.Context, ids []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket(sessionsBucket)
		for _, id := range ids {
			if err := root.DeleteBucket([]byte(id)); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return fmt.Errorf("delete session %s: %w", id, err)
			}
		}
		return nil
	})
}

// All returns every stored session with its steps.
func (s *Store) All(ctx context.Context) ([]sessionstore.Record, error) {
	var out []sessionstore.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(sessionsBucket).ForEachBucket(func(id []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			b := tx.Bucket(sessionsBucket).Bucket(id)
			var rec sessionstore.Record
			if err := json.Unmarshal(b.Get(metaKey), &rec); err != nil {
				return fmt.Errorf("session %s: decode: %w", id, err)
			}
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if len(k) != 8 {
					continue // meta
				}
				var st nextaction.Step
				if err := json.Unmarshal(v, &st); err != nil {
					return fmt.Errorf("session %s: decode step: %w", id, err)
				}
				rec.Steps = append(rec.Steps, st)
			}
			out = append(out, rec)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load sessions: %w", err)
	}
	return out, nil
}

func putStep(b *bolt.Bucket, index int, st nextaction.Step) error {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(index))
	return putJSON(b, k[:], st)
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	return b.Put(key, data)
}
