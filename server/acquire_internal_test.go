package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
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

// An Ollama request's keep_alive reaches the registry for its model:
// durations as given, a negative one (keep loaded) as negative, 0 (unload
// when idle) as 0; a request without one sets nothing.
func TestOllamaKeepAliveReachesKeeper(t *testing.T) {
	m := &Model{ID: "m", ContextLength: 64, Format: "llama3"}
	k := &keeperSource{m: m, kept: map[string]time.Duration{}}
	s, err := New(Config{}, Deps{Source: k})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
	for _, tc := range []struct {
		keepAlive string
		want      time.Duration
		set       bool
	}{
		{`"10m"`, 10 * time.Minute, true}, {`-1`, -1, true}, {`"-5m"`, -1, true}, {`0`, 0, true}, {``, 0, false},
	} {
		clear(k.kept)
		body := `{"model":"m"}`
		if tc.keepAlive != "" {
			body = `{"model":"m","keep_alive":` + tc.keepAlive + `}`
		}
		for _, path := range []string{"/api/generate", "/api/chat"} {
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
			resp, err := s.app.Test(req, 5000)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got, ok := k.kept["m"]
			if resp.StatusCode != http.StatusOK || ok != tc.set || got != tc.want {
				t.Errorf("%s keep_alive %s: status %d, kept %v (%v), want %v (%v)", path, tc.keepAlive, resp.StatusCode, got, ok, tc.want, tc.set)
			}
		}
	}
}
