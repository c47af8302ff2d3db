package server

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/admission"
	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/nextaction"
)

// Generator runs generations. MUST be goroutine-safe; *batching.Scheduler
// satisfies it.
type Generator interface {
	Submit(ctx context.Context, req batching.Request) (*batching.Handle, error)
}

// Tokenizer turns text into token ids. MUST be goroutine-safe.
// parseSpecial makes control-token text (<|eot_id|>) a control token;
// user content is always tokenized with it off.
type Tokenizer interface {
	Tokenize(text string, parseSpecial bool) ([]int32, error)
}

// Vocabulary is a model's token list. MUST be goroutine-safe; the
// llama.cpp engine satisfies it.
type Vocabulary interface {
	// Size is the number of tokens; ids are 0 to Size()-1.
	Size() int
	// Piece is a token's raw bytes.
	Piece(tok int32) string
}

// Model is one servable model.
type Model struct {
	ID      string
	Created time.Time
	OwnedBy string
	// ContextLength is the tokens one sequence may hold: prompt plus
	// completion must fit.
	ContextLength int
	// Format renders chat messages into a prompt.
	Format models.ChatFormat
	// BOS is prepended to raw /v1/completions prompts (empty when the
	// model adds none).
	BOS       []int32
	Tokenizer Tokenizer
	// Vocab is the model's vocabulary, for token-id prompts and the
	// tokenizer endpoints (nil: token ids are not checked here, and
	// /detokenize and /tokenizer_info answer 400).
	Vocab     Vocabulary
	Generator Generator
	// Grammars is the model's constrained decoding, for response_format
	// (nil: structured outputs are refused).
	Grammars *nextaction.Grammars
	// Actions plans POST /v1/actions/next and session steps for this
	// model (nil: off).
	Actions *nextaction.Planner
	// Defaults are the model's sampling defaults (params.go).
	Defaults SamplingDefaults
}

// Config holds the server's limits.
type Config struct {
	// BodyLimit is the largest request body in bytes (413 above it), as
	// received and, for a Content-Encoding body, once inflated.
	BodyLimit int
	// RequestTimeout is the server-side deadline of every generation.
	RequestTimeout time.Duration
	// DefaultMaxTokens applies when a request gives no max_tokens; it is
	// capped by the context left after the prompt.
	DefaultMaxTokens int
	// HeaderLimit is the largest request header block in bytes (431
	// above); DefaultHeaderLimit when 0.
	HeaderLimit int
	// HeaderTimeout bounds reading a request's header block (408 above;
	// see DefaultHeaderTimeout); the body then has RequestTimeout.
	// DefaultHeaderTimeout when 0.
	HeaderTimeout time.Duration
	// APIKeys, when any, are required on /v1/* as "Authorization: Bearer
	// <key>" (401 without a valid one). /health, /health/ready and /metrics
	// stay open.
	APIKeys []APIKey
	// RateLimit is the generation requests per second allowed to one API
	// key (to one client address without keys); 0: no limit. Over it: 429.
	RateLimit float64
	// RateBurst is how many requests a client may send at once within its
	// rate; 0: RateLimit rounded up, at least 1.
	RateBurst int
	// SessionTTL is how long a session (/v1/sessions) lives idle: each step
	// and GET restarts it; DefaultSessionTTL when 0.
	SessionTTL time.Duration
	// MaxSessions bounds the open sessions; one more is a 503
	// too_many_sessions. DefaultMaxSessions when 0.
	MaxSessions int
	// SessionLease is how long a step's lease on a session of a
	// SharedSessionStore lasts unrenewed (renewed every third of it);
	// DefaultSessionLease when 0.
	SessionLease time.Duration
	// MaxSessionBytes bounds the text one session keeps (persona and
	// history: pages, actions, rationales); a persona or a step that would
	// take it over is a 413. 0: SessionBytesPerToken times the model's
	// context length (more text than that cannot fit one prompt).
	MaxSessionBytes int
	// MaxMessages bounds the messages of a chat request, and the messages
	// a next-action prompt renders (three per history step); 400 above.
	// DefaultMaxMessages when 0.
	MaxMessages int
	// MaxStopBytes bounds each stop string (at most 16 of them); 400
	// above. DefaultMaxStopBytes when 0.
	MaxStopBytes int
	// ModelLoadWait bounds how long a request waits for its model to
	// load (503 queue_timeout after); 0: only RequestTimeout bounds it.
	ModelLoadWait time.Duration
}

// Deps are the server's collaborators.
type Deps struct {
	Logger *zap.Logger
	// Clock returns the current time; time.Now when nil.
	Clock func() time.Time
	// Models are a fixed set of loaded models; Source, instead, a source
	// that loads them on demand (give one of the two).
	Models []*Model
	Source ModelSource
	// Metrics records request metrics for /metrics; pass the same value to
	// the scheduler as its batching.Observer. nil: the server makes its own
	// (then only its own rejections are counted).
	Metrics *Metrics
	// Load is the scheduler's load for /metrics, with one model; Loads,
	// instead, the loads of many models' schedulers. Both nil: no load
	// gauges.
	Load  LoadReporter
	Loads ModelLoads
	// GPU is the GPU telemetry for /metrics; nil: none.
	GPU admission.GPUSignals
	// Sessions persists sessions (sessionpersist.go); nil: they live in
	// memory only and a restart loses them.
	Sessions SessionStore
	// Devices are the compute devices the engine found at start, reported
	// by /health/ready; nil: not reported.
	Devices []Device
}

// Device is a compute device the engine runs on, as /health/ready reports
// it (plain data: the server does not import the engine).
type Device struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Type is cpu, gpu, igpu or accel.
	Type    string `json:"type"`
	Library string `json:"library,omitempty"`
	// ComputeCapability is "major.minor" when the backend gives one.
	ComputeCapability string `json:"compute_capability,omitempty"`
	MemoryTotalBytes  uint64 `json:"memory_total_bytes"`
	// MemoryFreeBytes is the free memory when the engine started.
	MemoryFreeBytes uint64 `json:"memory_free_bytes"`
	// Layers is how many of the model's layers the device holds.
	Layers int `json:"layers"`
}
