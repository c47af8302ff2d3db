// Package redisstore is the session store that several nextact replicas
// share: a Redis server (--session-store redis://host:port/db).
//
// Keys, under the prefix nextact: (one Redis database, not a cluster):
//
//	nextact:sessions        sorted set: session id -> last use (Unix ms)
//	nextact:s:{id}:meta     the Record without steps or LastUsed (JSON)
//	nextact:s:{id}:steps    list: one JSON step per element, oldest first
//	nextact:s:{id}:lease    the replica whose step is in flight, with expiry
//
// Every operation is one Lua script, so it is atomic. A session idle for
// the TTL is gone: its keys expire in Redis, and every script treats a
// sorted-set score older than the TTL as absent (and removes it). The
// sorted set bounds the sessions (MaxSessions) across replicas. A step
// holds the session's lease, which expires unless renewed: a replica that
// dies mid-step blocks the session for at most one lease period.
//
// Durability is Redis's own (its RDB/AOF configuration): nextact sends each
// change before it answers, but Redis acknowledges a write before it
// reaches disk unless configured with appendfsync always.
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/sessionstore"
)

const (
	prefix = "nextact:"
	index  = prefix + "sessions"
)

// Options configure the store.
type Options struct {
	// TTL is the sessions' idle time to live. Required.
	TTL time.Duration
	// MaxSessions bounds the sessions held across replicas; 0: no bound.
	MaxSessions int
	// Lease is how long a step's lease lasts without renewal. Required.
	Lease time.Duration
}

// Store is a Redis-backed session store. Goroutine-safe.
type Store struct {
	rdb *redis.Client
	opt Options
}

// Open connects to the Redis server of url (redis://[user:pass@]host:port/db)
// and checks that it answers.
func Open(ctx context.Context, url string, opt Options) (*Store, error) {
	if opt.TTL <= 0 || opt.Lease <= 0 || opt.MaxSessions < 0 {
		return nil, fmt.Errorf("redis session store: TTL and lease must be positive, got %s and %s", opt.TTL, opt.Lease)
	}
	ro, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis session store: %w", err)
	}
	rdb := redis.NewClient(ro)
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis session store %s: %w", ro.Addr, err)
	}
	return &Store{rdb: rdb, opt: opt}, nil
}

// Close closes the connections.
func (s *Store) Close() error { return s.rdb.Close() }

func keys(id string) []string {
	k := prefix + "s:" + id + ":"
	return []string{index, k + "meta", k + "steps", k + "lease"}
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// live is the Lua prologue shared by the scripts: KEYS are keys(id),
// ARGV[1] the id, ARGV[2] now (ms), ARGV[3] the TTL (ms). It returns false
// from the script when the session is absent or expired (removing it).
const live = `
local now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
local meta = redis.call('GET', KEYS[2])
if not meta or not score or tonumber(score) + ttl <= now then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  redis.call('ZREM', KEYS[1], ARGV[1])
  return false
end
`

// touch (Lua) restarts the session's TTL at now.
const touch = `
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
`

// read (Lua) returns meta, the last use and the steps.
const read = `
local out = {meta, tostring(now)}
for _, s in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do out[#out + 1] = s end
return out
`

var (
	createScript = redis.NewScript(`
local now, ttl, max = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
if max > 0 and redis.call('ZCARD', KEYS[1]) >= max then return 0 end
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('SET', KEYS[2], ARGV[5], 'PX', ttl)
for i = 6, #ARGV do redis.call('RPUSH', KEYS[3], ARGV[i]) end
if #ARGV >= 6 then redis.call('PEXPIRE', KEYS[3], ttl) end
redis.call('ZADD', KEYS[1], now, ARGV[1])
return 1`)
	getScript   = redis.NewScript(live + touch + read)
	leaseScript = redis.NewScript(live + `
local cur = redis.call('GET', KEYS[4])
if cur and cur ~= ARGV[4] then return 'busy' end
redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[5])
` + touch + read)
	renewScript = redis.NewScript(live + `
if redis.call('GET', KEYS[4]) ~= ARGV[4] then return 0 end
redis.call('PEXPIRE', KEYS[4], ARGV[5])
` + touch + `return 1`)
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
return 1`)
	appendScript = redis.NewScript(live + `
if redis.call('LLEN', KEYS[3]) ~= tonumber(ARGV[4]) then return -1 end
redis.call('RPUSH', KEYS[3], ARGV[5])
` + touch + `return 1`)
	deleteScript = redis.NewScript(`
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1`)
)

// Create stores a new session; sessionstore.ErrFull when MaxSessions are
// held.
func (s *Store) Create(ctx context.Context, rec sessionstore.Record) error {
	steps := rec.Steps
	rec.Steps = nil
	meta, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	args := []any{rec.ID, ms(rec.LastUsed), s.opt.TTL.Milliseconds(), s.opt.MaxSessions, meta}
	for _, st := range steps {
		b, err := json.Marshal(st)
		if err != nil {
			return fmt.Errorf("create session: %w", err)
		}
		args = append(args, b)
	}
	n, err := createScript.Run(ctx, s.rdb, keys(rec.ID), args...).Int()
	switch {
	case err != nil:
		return fmt.Errorf("create session: %w", err)
	case n == 0:
		return sessionstore.ErrFull
	}
	return nil
}

// Get returns session id and restarts its TTL at now;
// sessionstore.ErrNotFound when absent or expired.
func (s *Store) Get(ctx context.Context, id string, now time.Time) (sessionstore.Record, error) {
	res, err := getScript.Run(ctx, s.rdb, keys(id), id, ms(now), s.opt.TTL.Milliseconds()).Result()
	return decode(id, res, err)
}

// Lease takes session id's lease for owner (or extends owner's) and
// returns the session; sessionstore.ErrBusy when another owner holds it.
func (s *Store) Lease(ctx context.Context, id, owner string, now time.Time) (sessionstore.Record, error) {
	res, err := leaseScript.Run(ctx, s.rdb, keys(id), id, ms(now), s.opt.TTL.Milliseconds(), owner, s.opt.Lease.Milliseconds()).Result()
	if str, ok := res.(string); err == nil && ok && str == "busy" {
		return sessionstore.Record{}, sessionstore.ErrBusy
	}
	return decode(id, res, err)
}

// Renew extends owner's lease on id and restarts the session's TTL;
// sessionstore.ErrBusy when owner no longer holds it.
func (s *Store) Renew(ctx context.Context, id, owner string, now time.Time) error {
	n, err := renewScript.Run(ctx, s.rdb, keys(id), id, ms(now), s.opt.TTL.Milliseconds(), owner, s.opt.Lease.Milliseconds()).Int()
	switch {
	case errors.Is(err, redis.Nil):
		return sessionstore.ErrNotFound
	case err != nil:
		return fmt.Errorf("renew lease: %w", err)
	case n == 0:
		return sessionstore.ErrBusy
	}
	return nil
}

// Release gives owner's lease on id back (nothing when another holds it).
func (s *Store) Release(ctx context.Context, id, owner string) error {
	if err := releaseScript.Run(ctx, s.rdb, keys(id), owner).Err(); err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}

// Append stores step as step index of session id, last used at lastUsed;
// sessionstore.ErrNotFound when the session is gone, ErrConflict when its
// history no longer has index steps.
func (s *Store) Append(ctx context.Context, id string, idx int, step nextaction.Step, lastUsed time.Time) error {
	b, err := json.Marshal(step)
	if err != nil {
		return fmt.Errorf("append step: %w", err)
	}
	n, err := appendScript.Run(ctx, s.rdb, keys(id), id, ms(lastUsed), s.opt.TTL.Milliseconds(), idx, b).Int()
	switch {
	case errors.Is(err, redis.Nil):
		return sessionstore.ErrNotFound
	case err != nil:
		return fmt.Errorf("append step: %w", err)
	case n < 0:
		return sessionstore.ErrConflict
	}
	return nil
}

// Delete removes sessions; unknown ids are no error.
func (s *Store) Delete(ctx context.Context, ids []string) error {
	for _, id := range ids {
		if err := deleteScript.Run(ctx, s.rdb, keys(id), id).Err(); err != nil {
			return fmt.Errorf("delete session: %w", err)
		}
	}
	return nil
}

// All returns every live session, keeping their last use; for tools and
// tests, not the serving path (it reads the sessions one by one).
func (s *Store) All(ctx context.Context) ([]sessionstore.Record, error) {
	ids, err := s.rdb.ZRange(ctx, index, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("load sessions: %w", err)
	}
	var out []sessionstore.Record
	for _, id := range ids {
		score, err := s.rdb.ZScore(ctx, index, id).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("load sessions: %w", err)
		}
		rec, err := s.Get(ctx, id, time.UnixMilli(int64(score)))
		if errors.Is(err, sessionstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// decode turns a script's {meta, last use, steps...} into a Record.
func decode(id string, res any, err error) (sessionstore.Record, error) {
	if errors.Is(err, redis.Nil) {
		return sessionstore.Record{}, sessionstore.ErrNotFound
	}
	if err != nil {
		return sessionstore.Record{}, fmt.Errorf("session %s: %w", id, err)
	}
	parts, ok := res.([]any)
	if !ok || len(parts) < 2 {
		return sessionstore.Record{}, fmt.Errorf("session %s: unexpected reply %T", id, res)
	}
	var rec sessionstore.Record
	meta, _ := parts[0].(string)
	if err := json.Unmarshal([]byte(meta), &rec); err != nil {
		return rec, fmt.Errorf("session %s: decode: %w", id, err)
	}
	last, _ := parts[1].(string)
	n, err := strconv.ParseInt(last, 10, 64)
	if err != nil {
		return rec, fmt.Errorf("session %s: last use %q", id, last)
	}
	rec.LastUsed = time.UnixMilli(n).UTC()
	for _, p := range parts[2:] {
		str, _ := p.(string)
		var st nextaction.Step
		if err := json.Unmarshal([]byte(str), &st); err != nil {
			return rec, fmt.Errorf("session %s: decode step: %w", id, err)
		}
		rec.Steps = append(rec.Steps, st)
	}
	return rec, nil
}
