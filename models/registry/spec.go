package registry

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Spec is one model the registry can serve. The registry reads ID,
// Aliases, Memory, Preload and KeepAlive; the rest is for the loader and
// the APIs, which the registry hands it to unchanged.
type Spec struct {
	// ID is the model's name in the APIs; Aliases are other names that
	// resolve to it (an Ollama model's full name and its name without
	// ":latest"). IDs and aliases are unique across a registry.
	ID      string
	Aliases []string
	// Path is the GGUF file.
	Path string
	// ChatFormat (llama3, chatml, mistral) and ActionFormat (prompted,
	// finetuned) name the formats; "" leaves the choice to the loader.
	ChatFormat, ActionFormat string
	// Sampling are the model's defaults for requests that do not say.
	Sampling Sampling
	// Slots and Ctx are the sequences decoded together and each one's
	// context, in tokens.
	Slots, Ctx int
	// Preload loads the model at start (Preload) instead of on first use.
	Preload bool
	// KeepAlive is how long the model stays loaded once idle: 0 unloads
	// it as soon as its last request ends, KeepAliveForever (any negative
	// value) keeps it until memory is needed or the registry closes.
	KeepAlive time.Duration
	// Memory is what the model takes once loaded, known before loading
	// (models.Info.Estimate).
	Memory Memory
	// ContextLength is the trained context; Details describe the model
	// for listings (/v1/models, /api/tags, /api/show).
	ContextLength int
	Details       Details
	// Source says where the spec came from, for messages ("--model",
	// "--models models.json", "--models-dir /m", "ollama store /s").
	Source string
}

// Sampling are sampling defaults; nil fields are not set.
type Sampling struct {
	Temperature *float64 `json:"temperature,omitempty"`
	TopP        *float64 `json:"top_p,omitempty"`
	TopK        *int     `json:"top_k,omitempty"`
	Seed        *int64   `json:"seed,omitempty"`
	MaxTokens   *int     `json:"max_tokens,omitempty"`
	Stop        []string `json:"stop,omitempty"`
}

// Details describe a model for listings and for Ollama's /api/show.
type Details struct {
	// Format is "gguf"; Family the GGUF's architecture; ParameterSize
	// and Quantization as Ollama shows them ("1.2B", "Q8_0").
	Format, Family, ParameterSize, Quantization string
	// FileSize is the GGUF's size in bytes; Modified its (or its Ollama
	// manifest's) modification time; Digest the Ollama manifest's
	// sha256 ("" outside a store).
	FileSize int64
	Modified time.Time
	Digest   string
	// Template is the GGUF's chat template; System an Ollama model's
	// default system prompt; Parameters its params layer as written.
	Template, System string
	Parameters       map[string]json.RawMessage
	// Adapters are LoRA adapter files (listed; not served yet).
	Adapters []string
}

// KeepAliveForever keeps an idle model loaded until its memory is needed
// for another or the registry closes. Every negative duration means the
// same.
const KeepAliveForever time.Duration = -1

// DefaultKeepAlive is Ollama's default keep_alive.
const DefaultKeepAlive = 5 * time.Minute

// ParseKeepAlive reads a keep_alive as Ollama does: a JSON number of
// seconds or a string, either a duration ("5m", "1h30m", "0") or a plain
// number of seconds ("300", "-1"); a negative value is forever.
func ParseKeepAlive(raw json.RawMessage) (time.Duration, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, fmt.Errorf("keep_alive: %w", err)
	}
	switch t := v.(type) {
	case float64:
		return secondsKeepAlive(t)
	case string:
		return ParseKeepAliveString(t)
	}
	return 0, fmt.Errorf("keep_alive: want a number of seconds or a duration string, got %s", strings.TrimSpace(string(raw)))
}

// ParseKeepAliveString reads a keep_alive written as text: a duration
// ("5m", "-1m") or a number of seconds ("300", "-1").
func ParseKeepAliveString(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return secondsKeepAlive(f)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("keep_alive %q: not a duration (5m, 1h) nor a number of seconds", s)
	}
	if d < 0 {
		return KeepAliveForever, nil
	}
	return d, nil
}

func secondsKeepAlive(f float64) (time.Duration, error) {
	switch {
	case math.IsNaN(f):
		return 0, fmt.Errorf("keep_alive: not a number")
	case f < 0:
		return KeepAliveForever, nil
	case f >= math.MaxInt64/float64(time.Second):
		return KeepAliveForever, nil // longer than time can say: never
	}
	return time.Duration(f * float64(time.Second)), nil
}

// FormatKeepAlive writes a keep_alive as ParseKeepAliveString reads it.
func FormatKeepAlive(d time.Duration) string {
	if d < 0 {
		return "-1"
	}
	return d.String()
}
