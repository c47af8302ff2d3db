package server

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/types/model"
)

// The Ollama API (ollama*.go): GET and HEAD / ("Ollama is running"),
// /api/version, /api/tags, /api/show, /api/ps, /api/chat and
// /api/generate, with the types of github.com/ollama/ollama/api, under the
// same API keys, body limits, admission and metrics as /v1. Errors have
// Ollama's shape {"error":"..."} (handleError). Endpoints that change the
// model store answer 501: nextact serves local models only. What is
// honoured of each request is in the README ("The Ollama API").

// OllamaAPIVersion is the version /api/version reports: that of the
// github.com/ollama/ollama module whose API types nextact speaks (go.mod).
const OllamaAPIVersion = "0.17.4"

// ollamaRunning is the body of GET /, Ollama's liveness answer.
const ollamaRunning = "Ollama is running"

// ollamaUnsupported are the endpoints of Ollama's API that manage a model
// store, by method and path: each answers 501.
var ollamaUnsupported = []struct{ method, path string }{
	{http.MethodPost, "/api/pull"},
	{http.MethodPost, "/api/push"},
	{http.MethodPost, "/api/create"},
	{http.MethodPost, "/api/copy"},
	{http.MethodDelete, "/api/delete"},
	{http.MethodHead, "/api/blobs/:digest"},
	{http.MethodPost, "/api/blobs/:digest"},
	{http.MethodPost, "/api/embed"},
	{http.MethodPost, "/api/embeddings"},
}

// ollamaRoutes registers the Ollama API. / stays open, as /health does;
// /api/* needs an API key when keys are configured, and its generation
// endpoints pass the gate (draining, rate limits) as /v1's POSTs do.
func (s *Server) ollamaRoutes() {
	s.app.Get("/", s.ollamaRoot) // Fiber routes HEAD / here too
	g := s.app.Group("/api", s.authenticate, s.inflateBody)
	g.Get("/version", s.ollamaVersion)
	g.Get("/tags", s.ollamaTags)
	g.Get("/ps", s.ollamaPs)
	g.Post("/show", s.ollamaShow)
	g.Post("/chat", s.gate, s.ollamaChat)         // ollama_gen.go
	g.Post("/generate", s.gate, s.ollamaGenerate) // ollama_gen.go
	for _, r := range ollamaUnsupported {
		g.Add(r.method, strings.TrimPrefix(r.path, "/api"), s.ollamaNotImplemented)
	}
}

// isOllamaPath reports whether path belongs to the Ollama API, whose errors
// have Ollama's shape. / is not counted: it answers GET and HEAD alone, and
// fasthttp reports a request it could not parse (headers over the limit)
// with the path /.
func isOllamaPath(path string) bool {
	return path == "/api" || strings.HasPrefix(path, "/api/")
}

// ollamaErrorBody is Ollama's error shape.
type ollamaErrorBody struct {
	Error string `json:"error"`
}

func (s *Server) ollamaRoot(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
	return c.SendString(ollamaRunning)
}

func (s *Server) ollamaVersion(c *fiber.Ctx) error {
	return c.JSON(struct {
		Version string `json:"version"`
	}{OllamaAPIVersion})
}

func (s *Server) ollamaNotImplemented(c *fiber.Ctx) error {
	return &requestError{status: http.StatusNotImplemented, code: "not_implemented", msg: fmt.Sprintf(
		"%s %s is not supported: nextact serves local models only (GGUF files and Ollama stores given at start); it does not pull, push, create, copy or delete models, take blobs, or compute embeddings.",
		c.Method(), c.Path())}
}

// ollamaLease acquires the model an Ollama request names; an unknown one
// is a 404 in Ollama's words.
func (s *Server) ollamaLease(c *fiber.Ctx, name string) (*Model, func(), error) {
	m, release, err := s.acquire(c, name)
	var re *requestError
	if errors.As(err, &re) && re.notFound {
		return nil, nil, &requestError{notFound: true, param: "model", code: re.code, msg: fmt.Sprintf("model %q not found", name)}
	}
	if err != nil {
		return nil, nil, err
	}
	// keep_alive: how long the model stays loaded once idle after this
	// request (the registry's keep_alive; forever is negative there).
	if d, ok := requestKeepAlive(c); ok {
		if d == math.MaxInt64 {
			d = -1
		}
		if err := s.setKeepAlive(m, d); err != nil {
			release()
			return nil, nil, err
		}
	}
	return m, release, nil
}

// sortedModels are the served models by ID, loaded or not.
func (s *Server) sortedModels() []ModelStatus {
	out := slices.Clone(s.source.List())
	slices.SortFunc(out, func(a, b ModelStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// ollamaDetails are a model's details in Ollama's listings.
func ollamaDetails(d ModelDetails) api.ModelDetails {
	return api.ModelDetails{Format: cmp.Or(d.Format, "gguf"), Family: d.Family, ParameterSize: d.ParameterSize, QuantizationLevel: d.Quantization}
}

// ollamaTags answers GET /api/tags: every served model, loaded or not.
func (s *Server) ollamaTags(c *fiber.Ctx) error {
	ms := s.sortedModels()
	out := api.ListResponse{Models: make([]api.ListModelResponse, len(ms))}
	for i, m := range ms {
		out.Models[i] = api.ListModelResponse{Name: m.ID, Model: m.ID, ModifiedAt: m.Created,
			Size: m.Details.FileSize, Digest: m.Details.Digest, Details: ollamaDetails(m.Details)}
	}
	return c.JSON(out)
}

// ollamaPs answers GET /api/ps: the loaded models, with the memory each
// takes (estimated before loading) and when an idle one unloads (zero:
// in use or kept loaded).
func (s *Server) ollamaPs(c *fiber.Ctx) error {
	out := api.ProcessResponse{Models: []api.ProcessModelResponse{}}
	for _, m := range s.sortedModels() {
		if !m.Loaded {
			continue
		}
		out.Models = append(out.Models, api.ProcessModelResponse{
			Name: m.ID, Model: m.ID, Size: m.SizeBytes, SizeVRAM: m.GPUBytes, Digest: m.Details.Digest,
			Details: ollamaDetails(m.Details), ExpiresAt: m.ExpiresAt, ContextLength: m.ContextLength,
		})
	}
	return c.JSON(out)
}

// ollamaShow answers POST /api/show: what the server knows of a model.
// model_info carries nextact's keys (the chat format, the context per
// sequence); parameters are the format's stop strings in Modelfile syntax.
func (s *Server) ollamaShow(c *fiber.Ctx) error {
	var req api.ShowRequest
	if err := decodeOllama(c.Body(), &req); err != nil {
		return err
	}
	name := req.Model
	if name == "" {
		name = req.Name // deprecated, still sent by old clients
	}
	m, release, err := s.ollamaLease(c, name)
	if err != nil {
		return err
	}
	defer release()
	var params strings.Builder
	for _, stop := range m.Format.StopStrings() {
		fmt.Fprintf(&params, "stop %q\n", stop)
	}
	return c.JSON(api.ShowResponse{
		Parameters: params.String(),
		Details:    ollamaDetails(ModelDetails{}),
		ModelInfo: map[string]any{
			"general.name":           m.ID,
			"nextact.chat_format":    string(m.Format),
			"nextact.context_length": m.ContextLength,
		},
		Capabilities: []model.Capability{model.CapabilityCompletion},
		ModifiedAt:   m.Created,
	})
}

// keepAliveLocal holds a request's keep_alive (a time.Duration) in the
// Fiber context, for acquire.
const keepAliveLocal = "nextact.keep_alive"

// setKeepAlive records the keep_alive an Ollama request asked for. A
// number of seconds too large for a time.Duration (api.Duration wraps it
// to a negative value) means forever, as a negative one does.
func setKeepAlive(c *fiber.Ctx, d *api.Duration) {
	if d == nil {
		return
	}
	v := d.Duration
	if v < 0 {
		v = math.MaxInt64
	}
	c.Locals(keepAliveLocal, v)
}

// decodeOllama parses an Ollama request body as decodeJSON does, naming
// keep_alive when its value is what failed (api.Duration's errors name no
// field).
func decodeOllama(body []byte, v any) error {
	err := decodeJSON(body, v)
	if err == nil {
		return nil
	}
	var ka struct {
		KeepAlive json.RawMessage `json:"keep_alive"`
	}
	if json.Unmarshal(body, &ka) == nil && !isNull(ka.KeepAlive) {
		var d api.Duration
		if derr := d.UnmarshalJSON(ka.KeepAlive); derr != nil {
			return invalid("keep_alive", `'keep_alive' must be a duration ("5m", "1h30m"), a number of seconds, or negative to keep the model loaded: %v.`, derr)
		}
	}
	return err
}

// requestKeepAlive is the keep_alive the request asked for, in Ollama's
// meaning: how long its model stays loaded after the request (0: unload
// now; a negative value in the request, math.MaxInt64 here: forever). ok
// is false when the request gave none.
func requestKeepAlive(c *fiber.Ctx) (d time.Duration, ok bool) {
	d, ok = c.Locals(keepAliveLocal).(time.Duration)
	return d, ok
}
