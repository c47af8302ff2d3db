package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/nextact/nextact/server"
	"github.com/nextact/nextact/sessionstore/boltstore"
)

// Values of --session-store besides a file path.
const (
	sessionStoreMemory = "memory"
	sessionStoreFile   = "sessions.db"
)

// validateSessionStore checks --session-store: empty (the embedded file
// under --cache-dir), memory, or a file path.
func validateSessionStore(v string) error {
	if i := strings.Index(v, "://"); i > 0 {
		return fmt.Errorf("--session-store %s: a %s:// store is not implemented yet (use a file path, or %s)", v, v[:i], sessionStoreMemory)
	}
	return nil
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
	store, err := boltstore.Open(path)
	if err != nil {
		return nil, nil, err
	}
	log.Info("session store", zap.String("path", path))
	return store, func(context.Context) error { return store.Close() }, nil
}

var _ server.SessionStore = (*boltstore.Store)(nil)
