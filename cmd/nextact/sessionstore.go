package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nextact/nextact/server"
	"github.com/nextact/nextact/sessionstore/boltstore"
	"github.com/nextact/nextact/sessionstore/redisstore"
)

// Values of --session-store besides a file path.
const (
	sessionStoreMemory = "memory"
	sessionStoreFile   = "sessions.db"
)

// validateSessionStore checks --session-store: empty (the embedded file
// under --cache-dir), memory, redis:// or rediss:// URL, or a file path.
func validateSessionStore(v string, lease time.Duration) error {
	if lease <= 0 {
		return fmt.Errorf("--session-lease must be positive, got %s", lease)
	}
	if i := strings.Index(v, "://"); i > 0 && !isRedis(v) {
		return fmt.Errorf("--session-store %s: unknown store %s:// (valid: redis://, rediss://, a file path, or %s)", v, v[:i], sessionStoreMemory)
	}
	return nil
}

func isRedis(v string) bool {
	return strings.HasPrefix(v, "redis://") || strings.HasPrefix(v, "rediss://")
}

// openSessionStore opens the session store --session-store names; nil for
// memory. The caller closes it after the server.
func openSessionStore(c serveConfig, log *zap.Logger) (server.SessionStore, func(context.Context) error, error) {
	path := c.SessionStore
	switch path {
	case sessionStoreMemory:
		log.Info("sessions in memory only: a restart loses them")
		return nil, nil, nil
	case "":
		if err := os.MkdirAll(c.CacheDir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("session store: %w", err)
		}
		path = filepath.Join(c.CacheDir, sessionStoreFile)
	}
	if isRedis(path) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		store, err := redisstore.Open(ctx, path, redisstore.Options{TTL: c.SessionTTL, MaxSessions: c.MaxSessions, Lease: c.SessionLease})
		if err != nil {
			return nil, nil, err
		}
		log.Info("shared session store", zap.String("url", redactURL(path)))
		return store, func(context.Context) error { return store.Close() }, nil
	}
	store, err := boltstore.Open(path)
	if err != nil {
		return nil, nil, err
	}
	log.Info("session store", zap.String("path", path))
	return store, func(context.Context) error { return store.Close() }, nil
}

// redactURL drops a URL's password for the log.
func redactURL(v string) string {
	u, err := url.Parse(v)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

var (
	_ server.SessionStore       = (*boltstore.Store)(nil)
	_ server.SharedSessionStore = (*redisstore.Store)(nil)
)
