package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/nextact/nextact/batching/admission"
)

// PriorityHeader asks for a priority class: low, normal or high. With API
// keys a request gets at most its key's class (the default); without keys,
// the header alone decides (normal when absent).
const PriorityHeader = "X-Nextact-Priority"

// APIKey is one accepted API key.
type APIKey struct {
	Key string
	// Name identifies the key in logs and rate limits, never the key
	// itself; "key-<n>" (1-based) when empty.
	Name string
	// Priority is the class of the key's requests, and the highest the
	// priority header may ask for.
	Priority admission.Priority
	// RateLimit and RateBurst override Config's for this key when non-zero;
	// a negative RateLimit means no limit.
	RateLimit float64
	RateBurst int
}

// authError is a request without a valid API key (401).
type authError struct{ missing bool }

func (e *authError) Error() string {
	if e.missing {
		return "You didn't provide an API key. Provide it in the Authorization header as 'Bearer YOUR_KEY'."
	}
	return "Incorrect API key provided."
}

// keyring checks API keys in constant time: a presented key is hashed once
// and compared with every stored hash, without stopping at a match.
type keyring struct {
	keys   []APIKey
	hashes [][sha256.Size]byte
}

func newKeyring(keys []APIKey) (*keyring, error) {
	r := &keyring{}
	seen := map[string]bool{}
	for i, k := range keys {
		switch {
		case k.Key == "":
			return nil, fmt.Errorf("server config: API key %d is empty", i+1)
		case strings.ContainsAny(k.Key, " \t\r\n"):
			return nil, fmt.Errorf("server config: API key %d contains white space", i+1)
		case seen[k.Key]:
			return nil, fmt.Errorf("server config: API key %d appears twice", i+1)
		}
		seen[k.Key] = true
		if k.Name == "" {
			k.Name = fmt.Sprintf("key-%d", i+1)
		}
		r.keys = append(r.keys, k)
		r.hashes = append(r.hashes, sha256.Sum256([]byte(k.Key)))
	}
	return r, nil
}

func (r *keyring) match(presented string) *APIKey {
	h := sha256.Sum256([]byte(presented))
	found := -1
	for i := range r.hashes {
		if subtle.ConstantTimeCompare(h[:], r.hashes[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil
	}
	return &r.keys[found]
}

// client is who sent a request, as the auth middleware found it.
type client struct {
	name     string // the key's name, or the peer address without keys
	priority admission.Priority
	rate     float64 // requests per second; 0 or less: no limit
	burst    int
}

const clientLocal = "nextact.client"

// clientOf returns the request's client; a default one when the auth
// middleware did not run.
func clientOf(c *fiber.Ctx) *client {
	if cl, ok := c.Locals(clientLocal).(*client); ok {
		return cl
	}
	return &client{name: "addr:" + c.IP()}
}

// requestPriority is the priority class of the request, for batching.Request.
func requestPriority(c *fiber.Ctx) admission.Priority { return clientOf(c).priority }

// authenticate identifies the client of every /v1 request: its API key when
// keys are configured (401 without a valid one), else its address; and its
// priority class.
func (s *Server) authenticate(c *fiber.Ctx) error {
	cl := &client{priority: admission.PriorityNormal, rate: s.cfg.RateLimit, burst: s.cfg.RateBurst}
	ceiling := admission.PriorityHigh
	if len(s.keys.keys) > 0 {
		presented, ok := bearer(c.Get(fiber.HeaderAuthorization))
		if !ok {
			return &authError{missing: true}
		}
		k := s.keys.match(presented)
		if k == nil {
			return &authError{}
		}
		cl.name, cl.priority, ceiling = k.Name, k.Priority, k.Priority
		if k.RateLimit != 0 {
			cl.rate, cl.burst = k.RateLimit, k.RateBurst
		}
	} else {
		cl.name = "addr:" + c.IP()
	}
	if h := c.Get(PriorityHeader); h != "" {
		p, err := admission.ParsePriority(strings.ToLower(strings.TrimSpace(h)))
		if err != nil {
			return invalid("", "The %s header must be low, normal or high.", PriorityHeader)
		}
		cl.priority = min(p, ceiling)
	}
	c.Locals(clientLocal, cl)
	return c.Next()
}

// bearer extracts the token of an "Authorization: Bearer <token>" header.
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
