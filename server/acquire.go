package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"

	"github.com/nextact/nextact/batching/admission"
)

// ModelSource is where the server gets its models: every request resolves
// its model through Acquire and releases it when its answer is written,
// so the source may load models on demand and unload idle ones (nextact's
// model registry, wired in cmd/nextact). MUST be goroutine-safe.
type ModelSource interface {
	// Acquire returns the model name (an ID or an alias) refers to, loaded,
	// and a release that ends the lease; it may wait for a load, as long
	// as ctx allows. Errors: ErrModelNotFound, *InsufficientMemoryError,
	// *ModelLoadError, batching.ErrClosed, or ctx's.
	Acquire(ctx context.Context, name string) (*Model, func(), error)
	// List describes every model the source serves, loaded or not.
	List() []ModelStatus
}

// ModelStatus describes one model for listings (/v1/models).
type ModelStatus struct {
	ID string
	// Aliases are other names that resolve to the model.
	Aliases []string
	Created time.Time
	OwnedBy string
	// ContextLength is the tokens one sequence of the model may hold.
	ContextLength int
	// Loaded reports whether the model is loaded now.
	Loaded bool
	// ExpiresAt is when an idle loaded model unloads; zero when it is not
	// loaded, in use, or kept loaded.
	ExpiresAt time.Time
	// SizeBytes and GPUBytes are the memory the model takes once loaded
	// (estimated before loading), in all and on the GPU.
	SizeBytes, GPUBytes int64
	// Details describe the model for listings such as Ollama's.
	Details ModelDetails
}

// ModelDetails describe a model's file.
type ModelDetails struct {
	// Format is "gguf"; Family the architecture; ParameterSize and
	// Quantization as Ollama shows them ("1.2B", "Q8_0").
	Format, Family, ParameterSize, Quantization string
	// FileSize is the GGUF's size; Digest an Ollama manifest's sha256
	// ("" outside a store).
	FileSize int64
	Digest   string
	// Template is the GGUF's chat template, System an Ollama model's
	// default system prompt.
	Template, System string
}

// ModelKeeper is the optional extension of a ModelSource that honours a
// request's keep_alive (Ollama's), as the registry does.
type ModelKeeper interface {
	// SetKeepAlive sets how long the model stays loaded once idle after
	// its current requests (0: unload then; negative: never); the next
	// busy period starts from the model's own keep_alive again.
	SetKeepAlive(name string, d time.Duration) error
	// Unload unloads the model as soon as it is idle.
	Unload(name string) error
}

// setKeepAlive applies a request's keep_alive to the model it leased (m,
// from acquire); a source that keeps models loaded for good ignores it.
func (s *Server) setKeepAlive(m *Model, d time.Duration) error {
	if k, ok := s.source.(ModelKeeper); ok {
		return k.SetKeepAlive(m.ID, d)
	}
	return nil
}

// ErrModelNotFound is a ModelSource's error for a name it does not serve.
var ErrModelNotFound = errors.New("model not found")

// InsufficientMemoryError is a model that cannot be loaded within the
// memory budget: never (Never), or not before RetryAfter.
type InsufficientMemoryError struct {
	Model      string
	Never      bool
	RetryAfter time.Duration
	// Detail says what the model needs and what is held.
	Detail string
}

func (e *InsufficientMemoryError) Error() string {
	if e.Never {
		return fmt.Sprintf("The model %q does not fit in the server's memory budget: %s.", e.Model, e.Detail)
	}
	return fmt.Sprintf("The model %q cannot be loaded now: models in use hold the memory it needs (%s). Retry after the time in Retry-After.", e.Model, e.Detail)
}

// ModelLoadError is a model whose load failed.
type ModelLoadError struct {
	Model string
	Err   error
}

func (e *ModelLoadError) Error() string { return fmt.Sprintf("load model %s: %v", e.Model, e.Err) }
func (e *ModelLoadError) Unwrap() error { return e.Err }

// modelLoadRetryAfter is the Retry-After of a request that waited longer
// than Config.ModelLoadWait for its model to load.
const modelLoadRetryAfter = 5 * time.Second

// Keys of what acquire leaves in a request's Locals.
const (
	localLease     = "nextact.lease"
	localModelWait = "nextact.model_wait"
)

// acquire resolves the model a request names and leases it until release
// is called (handlers defer it; a stream that outlives its handler holds
// the lease with holdLease). Waiting for a load is bounded by
// Config.ModelLoadWait, Config.RequestTimeout and the request's context
// (c.UserContext(), which requestContext sets to the request's deadline),
// and is counted as queue time
// of the generation that follows (modelWait). An unknown model is a 404
// model_not_found, one that does not fit a 503 insufficient_memory.
func (s *Server) acquire(c *fiber.Ctx, id string) (*Model, func(), error) {
	if id == "" {
		return nil, nil, invalid("model", "'model' is required.")
	}
	start := s.now()
	// Bounded by the request's deadline (the handler's context), and by
	// --request-timeout even where a handler has none.
	ctx, cancel := context.WithTimeout(s.base, s.cfg.RequestTimeout)
	defer cancel()
	stop := context.AfterFunc(c.UserContext(), cancel)
	defer stop()
	if s.cfg.ModelLoadWait > 0 {
		var cancelWait context.CancelFunc
		ctx, cancelWait = context.WithTimeout(ctx, s.cfg.ModelLoadWait)
		defer cancelWait()
	}
	m, release, err := s.source.Acquire(ctx, id)
	if err != nil {
		return nil, nil, s.acquireError(c, id, err, ctx)
	}
	h := &leaseHold{release: release}
	h.n.Store(1)
	c.Locals(localLease, h)
	c.Locals(localModelWait, s.now().Sub(start))
	return m, h.releaser(), nil
}

// acquireError turns a ModelSource's error into the client's answer.
func (s *Server) acquireError(c *fiber.Ctx, id string, err error, ctx context.Context) error {
	var load *ModelLoadError
	switch {
	case errors.Is(err, ErrModelNotFound):
		return &requestError{notFound: true, param: "model", code: "model_not_found",
			msg: fmt.Sprintf("The model %q does not exist.", id)}
	case errors.As(err, &load):
		s.log.Error("model load failed", zap.String("model", id), zap.Error(err))
		return err
	case ctx.Err() != nil && c.UserContext().Err() == nil && s.base.Err() == nil:
		// The load outlasted ModelLoadWait: the request waited as long
		// as it may for a slot.
		return &admission.OverloadError{Reason: admission.ReasonQueueTimeout, RetryAfter: modelLoadRetryAfter}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(c.UserContext().Err(), context.DeadlineExceeded):
		return context.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return errShuttingDown
	}
	return err
}

// modelFailure answers the errors of a ModelSource the generic cases of
// httpError do not cover.
func modelFailure(err error) (httpFailure, bool) {
	var (
		mem  *InsufficientMemoryError
		load *ModelLoadError
	)
	switch {
	case errors.As(err, &mem):
		f := failure(http.StatusServiceUnavailable, typeOverloaded, "model", "insufficient_memory", mem.Error())
		if !mem.Never {
			f.retryAfter = max(mem.RetryAfter, time.Second)
		}
		return f, true
	case errors.As(err, &load):
		return failure(http.StatusInternalServerError, typeServer, "model", "model_load_failed",
			fmt.Sprintf("The model %q failed to load.", load.Model)), true
	}
	return httpFailure{}, false
}

// modelWait is how long the request waited in acquire for its model: the
// generation's queue time starts there (batching.Request.PriorWait).
func modelWait(c *fiber.Ctx) time.Duration {
	d, _ := c.Locals(localModelWait).(time.Duration)
	return d
}

// holdLease extends the request's model lease past its handler, for a
// response written after the handler returns (a stream): the model stays
// leased until the returned func is called too.
func holdLease(c *fiber.Ctx) func() {
	h, ok := c.Locals(localLease).(*leaseHold)
	if !ok {
		return func() {}
	}
	h.n.Add(1)
	return h.releaser()
}

// leaseHold counts the holders of one lease: the handler and a stream.
type leaseHold struct {
	n       atomic.Int32
	release func()
}

// releaser is one holder's release; calling it twice counts once.
func (h *leaseHold) releaser() func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			if h.n.Add(-1) == 0 {
				h.release()
			}
		})
	}
}

// staticModels is a fixed set of loaded models (Deps.Models).
type staticModels struct {
	byID map[string]*Model
	list []ModelStatus
}

func newStaticModels(ms []*Model) (*staticModels, error) {
	byID, err := indexModels(ms)
	if err != nil {
		return nil, err
	}
	st := &staticModels{byID: byID}
	for _, m := range ms {
		st.list = append(st.list, ModelStatus{ID: m.ID, Created: m.Created, OwnedBy: m.OwnedBy, ContextLength: m.ContextLength, Loaded: true})
	}
	return st, nil
}

func (st *staticModels) Acquire(_ context.Context, name string) (*Model, func(), error) {
	if m := st.byID[name]; m != nil {
		return m, func() {}, nil
	}
	return nil, nil, ErrModelNotFound
}

func (st *staticModels) List() []ModelStatus { return st.list }

var _ ModelSource = (*staticModels)(nil)

// CheckModel validates a model as New does the models of Deps.Models; a
// ModelSource should check the models it loads with it.
func CheckModel(m *Model) error {
	_, err := indexModels([]*Model{m})
	return err
}
