package redisstore_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/sessionstore"
	"github.com/nextact/nextact/sessionstore/redisstore"
	"github.com/nextact/nextact/sessionstore/redisstore/redistest"
)

// The Redis store on a real redis-server: create, get, steps appended in
// order with compare-and-append on the index, the lease (exclusive,
// released, expiring), the TTL by the clock passed in, MaxSessions, delete.
func TestRedisStore(t *testing.T) {
	t.Parallel()
	url := redistest.Start(t)
	ctx := context.Background()
	const lease = 300 * time.Millisecond
	s, err := redisstore.Open(ctx, url, redisstore.Options{TTL: time.Minute, MaxSessions: 2, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Now().Truncate(time.Millisecond).UTC()
	a := sessionstore.Record{ID: "sess_a", Model: "m", Format: "prompted", Persona: "p",
		History: nextaction.HistoryPolicy{Policy: "window", MaxTokens: 9}, Created: t0, LastUsed: t0}
	if err := s.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	step := nextaction.Step{Page: "<a name=x>", Action: nextaction.Action{Type: "click", Name: "x"}, Rationale: "r"}
	if err := s.Append(ctx, a.ID, 0, step, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, a.ID, 0, step, t0.Add(time.Second)); !errors.Is(err, sessionstore.ErrConflict) {
		t.Fatalf("append at a stale index: %v", err)
	}
	a.Steps, a.LastUsed = []nextaction.Step{step}, t0.Add(2*time.Second)
	got, err := s.Get(ctx, a.ID, a.LastUsed)
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("get: %v\n%+v\nwant\n%+v", err, got, a)
	}

	if _, err := s.Lease(ctx, a.ID, "one", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lease(ctx, a.ID, "two", t0); !errors.Is(err, sessionstore.ErrBusy) {
		t.Fatalf("second lease: %v", err)
	}
	if err := s.Renew(ctx, a.ID, "two", t0); !errors.Is(err, sessionstore.ErrBusy) {
		t.Fatalf("renew by another owner: %v", err)
	}
	if err := s.Release(ctx, a.ID, "one"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lease(ctx, a.ID, "two", t0); err != nil {
		t.Fatalf("lease after release: %v", err)
	}
	time.Sleep(lease + 100*time.Millisecond) // "two" died without releasing
	if _, err := s.Lease(ctx, a.ID, "three", t0); err != nil {
		t.Fatalf("lease after expiry: %v", err)
	}

	b := sessionstore.Record{ID: "sess_b", Model: "m", Format: "prompted", Created: t0, LastUsed: t0}
	if err := s.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	c := b
	c.ID = "sess_c"
	if err := s.Create(ctx, c); !errors.Is(err, sessionstore.ErrFull) {
		t.Fatalf("create past MaxSessions: %v", err)
	}
	// b idles past the TTL: gone, and its place is free.
	if _, err := s.Get(ctx, b.ID, t0.Add(time.Minute)); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatalf("expired session: %v", err)
	}
	c.LastUsed = t0.Add(time.Minute)
	if err := s.Create(ctx, c); err != nil {
		t.Fatalf("create after an expiry: %v", err)
	}
	if err := s.Delete(ctx, []string{a.ID, "sess_unknown"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, a.ID, 1, step, t0); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatalf("append to a deleted session: %v", err)
	}
	all, err := s.All(ctx)
	if err != nil || len(all) != 1 || all[0].ID != c.ID {
		t.Fatalf("all: %v %+v", err, all)
	}
}
