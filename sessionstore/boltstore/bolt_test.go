package boltstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/sessionstore"
	"github.com/nextact/nextact/sessionstore/boltstore"
)

// The store keeps sessions across a close and reopen: created ones with
// their steps in order and LastUsed moved by each append, deleted ones
// gone; appending to a deleted session is ErrNotFound; a second opener of
// the same file waits for the lock and fails.
func TestStoreRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	a := sessionstore.Record{ID: "sess_a", Model: "m", Format: "prompted", Persona: "p",
		History: nextaction.HistoryPolicy{Policy: "strict", MaxTokens: 7}, Created: t0, LastUsed: t0}
	b := sessionstore.Record{ID: "sess_b", Model: "m", Format: "finetuned", Created: t0, LastUsed: t0,
		Steps: []nextaction.Step{{Page: "<a name=x>", Action: nextaction.Action{Type: "terminate"}}}}
	for _, r := range []sessionstore.Record{a, b} {
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// 300 steps: keys must sort numerically past 255.
	for i := range 300 {
		step := nextaction.Step{Page: "page", Action: nextaction.Action{Type: "click", Name: "n"}, Rationale: string(rune('a' + i%26))}
		if err := s.Append(ctx, a.ID, i, step, t0.Add(time.Duration(i+1)*time.Second)); err != nil {
			t.Fatal(err)
		}
		a.Steps = append(a.Steps, step)
	}
	a.LastUsed = t0.Add(300 * time.Second)
	if err := s.Delete(ctx, []string{b.ID, "sess_unknown"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, b.ID, 1, b.Steps[0], t0); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatalf("append to a deleted session: %v", err)
	}
	if _, err := boltstore.Open(path); err == nil {
		t.Fatal("a second opener got the locked file")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !reflect.DeepEqual(got[0], a) {
		t.Fatalf("after reopening: %+v\nwant %+v", got, a)
	}
}

// BenchmarkAppend is one step written through: a transaction fsynced on
// commit, with a page of about 4 KiB.
func BenchmarkAppend(b *testing.B) {
	s, err := boltstore.Open(filepath.Join(b.TempDir(), "sessions.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	t0 := time.Now()
	if err := s.Create(ctx, sessionstore.Record{ID: "sess_b", Model: "m", Format: "prompted", Created: t0, LastUsed: t0}); err != nil {
		b.Fatal(err)
	}
	step := nextaction.Step{Page: strings.Repeat("<a name=x>x</a>", 270), Action: nextaction.Action{Type: "click", Name: "x"}, Rationale: "because"}
	b.ResetTimer()
	for i := range b.N {
		if err := s.Append(ctx, "sess_b", i, step, t0); err != nil {
			b.Fatal(err)
		}
	}
}
