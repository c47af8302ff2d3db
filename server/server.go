package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"go.uber.org/zap"

	"github.com/nextact/nextact/models"
)

// Defaults for zero Config fields.
const (
	DefaultBodyLimit      = 8 << 20
	DefaultRequestTimeout = 10 * time.Minute
	DefaultHeaderLimit    = 16 << 10
	// DefaultMaxMessages bounds a chat request's messages.
	DefaultMaxMessages = 2048
	// DefaultMaxStopBytes bounds one stop string.
	DefaultMaxStopBytes = 256
	// SessionBytesPerToken sizes the default session bound from the
	// context length: generous for text (about 4 bytes a token), so only
	// a session that could never fit its prompt hits it.
	SessionBytesPerToken = 16
	// idleTimeout closes keep-alive connections that send nothing.
	idleTimeout = 2 * time.Minute
	// writeSlack is added to RequestTimeout to bound writing one response:
	// a stream ends at the request's deadline, plus the final events.
	writeSlack = 30 * time.Second
	// defaultOwner is owned_by for models that name no owner.
	defaultOwner = "nextact"
)

// Server serves the OpenAI-compatible API. Its methods are goroutine-safe.
type Server struct {
	cfg Config
	log *zap.Logger
	now func() time.Time
	// source resolves each request's model (acquire.go).
	source    ModelSource
	app       *fiber.App
	keepAlive time.Duration // see defaultKeepAlive
	// clientPoll is how often a non-streaming request's connection is
	// probed for a client that went away (clientgone.go).
	clientPoll time.Duration

	// base is the parent of every request's context; cancelled when
	// Shutdown gives up waiting.
	base       context.Context
	cancelBase context.CancelFunc
	inflight   inflight

	// Operations (ready.go, auth.go, ratelimit.go, metrics.go).
	state   atomic.Int32 // stateStarting, stateReady, stateDraining
	drainMu sync.Mutex   // orders Drain against gate's in-flight count
	conns   connSet
	keys    *keyring
	limiter *rateLimiter
	metrics *Metrics

	sessions sessionKeeper // sessions.go
	// readyBodies are /health/ready's bodies by state (ready.go).
	readyBodies [3][]byte
}

// New validates cfg and deps and builds the server. Zero Config fields take
// defaults (DefaultBodyLimit, DefaultRequestTimeout; DefaultMaxTokens 0
// means the context left after the prompt). Deps.Logger may be nil.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	source := deps.Source
	switch {
	case source != nil && len(deps.Models) > 0:
		return nil, errors.New("server: give Models or a Source, not both")
	case source == nil:
		static, err := newStaticModels(deps.Models)
		if err != nil {
			return nil, err
		}
		source = static
	}
	s := &Server{cfg: cfg, log: deps.Logger, now: deps.Clock, source: source, keepAlive: defaultKeepAlive, clientPoll: clientPoll, metrics: deps.Metrics}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.Named("server")
	if s.now == nil {
		s.now = time.Now
	}
	if s.keys, err = newKeyring(cfg.APIKeys); err != nil {
		return nil, err
	}
	s.limiter = newRateLimiter(s.now)
	var local *sessionStore
	if shared, ok := deps.Sessions.(SharedSessionStore); ok {
		s.sessions = newSharedSessions(shared, s.contextOf, cfg, s.now, s.log.Named("sessions"))
	} else {
		local = newSessionStore(cfg.SessionTTL, cfg.MaxSessions, s.now, deps.Sessions, s.log.Named("sessions"))
		s.sessions = local
	}
	if s.metrics == nil {
		s.metrics = NewMetrics()
	}
	if err := s.metrics.reg.Register(&gauges{s: s, loads: loadsOf(deps), gpu: deps.GPU}); err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	if s.readyBodies, err = renderReadiness(deps.Devices); err != nil {
		return nil, err
	}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.app = fiber.New(fiber.Config{
		BodyLimit:             cfg.BodyLimit,
		ReadBufferSize:        cfg.HeaderLimit,
		ErrorHandler:          s.handleError,
		DisableStartupMessage: true,
		ReadTimeout:           cfg.HeaderTimeout, // the body gets RequestTimeout: transport.go
		WriteTimeout:          cfg.RequestTimeout + writeSlack,
		IdleTimeout:           idleTimeout,
		// nextact reads JSON only: never spool multipart forms.
		DisablePreParseMultipartForm: true,
	})
	s.configureTransport() // transport.go
	// Responses written while shutting down close their connection.
	s.app.Server().CloseOnShutdown = true
	s.app.Server().ConnState = s.conns.track // ready.go
	s.routes()
	// Last: loading may start the session janitor.
	if local != nil {
		if err := local.load(s.contextOf); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	return s, nil
}

func withDefaults(cfg Config) (Config, error) {
	switch {
	case cfg.BodyLimit < 0:
		return cfg, fmt.Errorf("server config: body limit must not be negative, got %d", cfg.BodyLimit)
	case cfg.RequestTimeout < 0:
		return cfg, fmt.Errorf("server config: request timeout must not be negative, got %s", cfg.RequestTimeout)
	case cfg.DefaultMaxTokens < 0:
		return cfg, fmt.Errorf("server config: default max tokens must not be negative, got %d", cfg.DefaultMaxTokens)
	case cfg.HeaderLimit < 0 || cfg.HeaderTimeout < 0:
		return cfg, fmt.Errorf("server config: header limit and timeout must not be negative, got %d and %s", cfg.HeaderLimit, cfg.HeaderTimeout)
	case cfg.RateLimit < 0 || cfg.RateBurst < 0:
		return cfg, fmt.Errorf("server config: rate limit and burst must not be negative, got %g and %d", cfg.RateLimit, cfg.RateBurst)
	case cfg.SessionTTL < 0 || cfg.MaxSessions < 0 || cfg.MaxSessionBytes < 0:
		return cfg, fmt.Errorf("server config: session TTL, max sessions and session bytes must not be negative, got %s, %d and %d", cfg.SessionTTL, cfg.MaxSessions, cfg.MaxSessionBytes)
	case cfg.ModelLoadWait < 0:
		return cfg, fmt.Errorf("server config: model load wait must not be negative, got %s", cfg.ModelLoadWait)
	case cfg.MaxMessages < 0 || cfg.MaxStopBytes < 0:
		return cfg, fmt.Errorf("server config: max messages and stop bytes must not be negative, got %d and %d", cfg.MaxMessages, cfg.MaxStopBytes)
	}
	if cfg.MaxMessages == 0 {
		cfg.MaxMessages = DefaultMaxMessages
	}
	if cfg.MaxStopBytes == 0 {
		cfg.MaxStopBytes = DefaultMaxStopBytes
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.SessionLease <= 0 {
		cfg.SessionLease = DefaultSessionLease
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.HeaderLimit == 0 {
		cfg.HeaderLimit = DefaultHeaderLimit
	}
	if cfg.HeaderTimeout == 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	if cfg.BodyLimit == 0 {
		cfg.BodyLimit = DefaultBodyLimit
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	return cfg, nil
}

func indexModels(ms []*Model) (map[string]*Model, error) {
	if len(ms) == 0 {
		return nil, errors.New("server: no models")
	}
	byID := make(map[string]*Model, len(ms))
	for i, m := range ms {
		switch {
		case m == nil:
			return nil, fmt.Errorf("server: model %d is nil", i)
		case m.ID == "":
			return nil, fmt.Errorf("server: model %d has no ID", i)
		case byID[m.ID] != nil:
			return nil, fmt.Errorf("server: model ID %q appears twice", m.ID)
		case m.ContextLength < 2:
			return nil, fmt.Errorf("server: model %q: context length must be at least 2, got %d", m.ID, m.ContextLength)
		case m.Tokenizer == nil || m.Generator == nil:
			return nil, fmt.Errorf("server: model %q needs a tokenizer and a generator", m.ID)
		}
		if _, err := models.ParseChatFormat(string(m.Format)); err != nil {
			return nil, fmt.Errorf("server: model %q: %w", m.ID, err)
		}
		byID[m.ID] = m
	}
	return byID, nil
}

func (s *Server) routes() {
	s.app.Use(s.logRequests)
	s.app.Use(recover.New(recover.Config{
		EnableStackTrace: true,
		StackTraceHandler: func(c *fiber.Ctx, e any) {
			s.log.Error("panic in handler", zap.String("path", strings.Clone(c.Path())),
				zap.Any("panic", e), zap.StackSkip("stack", 2))
		},
	}))
	s.app.Get("/health/ready", s.ready)        // ready.go
	s.app.Get("/metrics", s.metrics.handler()) // metrics.go
	s.app.Use("/v1", s.authenticate)           // API keys, priority: auth.go
	s.app.Use("/v1", s.gate)                   // POSTs: draining, rate limits: ready.go
	s.app.Use("/v1", s.inflateBody)            // Content-Encoding under the body limit: encoding.go
	s.app.Post("/v1/chat/completions", s.chatCompletions)
	s.app.Post("/v1/completions", s.completions)
	s.app.Post("/v1/actions/next", s.nextAction)
	s.app.Post("/v1/sessions", s.createSession) // sessions.go
	s.app.Post("/v1/sessions/:id/steps", s.sessionStep)
	s.app.Get("/v1/sessions/:id", s.getSession)
	s.app.Delete("/v1/sessions/:id", s.deleteSession)
	s.app.Get("/v1/models", s.listModels) // models.go
	s.app.Get("/v1/models/*", s.getModel)
	// The tokenizer endpoints live at llama-server's and vLLM's paths,
	// outside /v1, behind the same middleware: tokenizer.go.
	s.app.Post("/tokenize", s.authenticate, s.gate, s.inflateBody, s.tokenize)
	s.app.Post("/detokenize", s.authenticate, s.gate, s.inflateBody, s.detokenize)
	s.app.Get("/tokenizer_info", s.authenticate, s.tokenizerInfo)
	s.app.Get("/health", s.health)
	s.ollamaRoutes() // ollama.go
}

// App returns the Fiber app, for tests (app.Test) and for mounting.
func (s *Server) App() *fiber.App { return s.app }

// Serve accepts connections on ln until Shutdown; it blocks and returns nil
// after a shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.app.Listener(ln); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections and waits for in-flight requests,
// open streams included, to finish. When ctx ends first it cancels the
// generations still running (their streams end with an error event) and
// returns ctx's error. Call it before closing the Generator. It also stops
// the session janitor; the sessions themselves are dropped with the server.
func (s *Server) Shutdown(ctx context.Context) error {
	s.startDraining()        // ready.go: no new generations from here on
	defer s.sessions.close() // stops the session janitor
	stop := make(chan struct{})
	defer close(stop)
	go s.closeLingering(ctx, stop) // ready.go
	if err := s.app.ShutdownWithContext(ctx); err != nil {
		s.cancelBase()
		return fmt.Errorf("shutdown: %w", err)
	}
	select {
	case <-s.inflight.idle():
		s.cancelBase()
		return nil
	case <-ctx.Done():
		s.cancelBase()
		return fmt.Errorf("shutdown: %w", ctx.Err())
	}
}

// logRequests renders errors itself, so it sees the final status, and logs
// every request at Debug.
func (s *Server) logRequests(c *fiber.Ctx) error {
	start := s.now()
	if err := c.Next(); err != nil {
		if werr := s.handleError(c, err); werr != nil {
			s.log.Warn("write error response", zap.Error(werr))
		}
	}
	if ce := s.log.Check(zap.DebugLevel, "request"); ce != nil {
		ce.Write(
			zap.String("method", strings.Clone(c.Method())),
			zap.String("path", strings.Clone(c.Path())),
			zap.Int("status", c.Response().StatusCode()),
			zap.Duration("duration", s.now().Sub(start)),
		)
	}
	return nil
}

func (s *Server) health(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.SendString(`{"status":"ok"}`)
}
