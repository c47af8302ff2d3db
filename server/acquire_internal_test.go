package server

import (
	"context"
	"testing"
	"time"
)

// keeperSource is a one-model ModelSource that records keep_alives.
type keeperSource struct {
	m    *Model
	kept map[string]time.Duration
}

func (k *keeperSource) Acquire(context.Context, string) (*Model, func(), error) {
	return k.m, func() {}, nil
}
func (k *keeperSource) List() []ModelStatus { return nil }
func (k *keeperSource) SetKeepAlive(name string, d time.Duration) error {
	k.kept[name] = d
	return nil
}
func (k *keeperSource) Unload(string) error { return nil }

var _ ModelKeeper = (*keeperSource)(nil)

// setKeepAlive reaches a source that keeps models (the registry) by the
// model's ID, and is a no-op on the static models of Deps.Models.
func TestSetKeepAliveReachesKeeper(t *testing.T) {
	m := &Model{ID: "m"}
	k := &keeperSource{m: m, kept: map[string]time.Duration{}}
	s := &Server{source: k}
	if err := s.setKeepAlive(m, 0); err != nil || len(k.kept) != 1 || k.kept["m"] != 0 {
		t.Errorf("keeper: %v %v", err, k.kept)
	}
	s.source = &staticModels{}
	if err := s.setKeepAlive(m, time.Minute); err != nil {
		t.Errorf("static models: %v", err)
	}
}
