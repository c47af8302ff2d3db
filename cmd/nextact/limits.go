package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/server"
)

// limitsConfig holds the bounds on request content (README "Resource
// limits"). Zero values take the server's and compiler's defaults, so a
// config built in code (tests) need not set them.
type limitsConfig struct {
	HeaderTimeout     time.Duration
	MaxMessages       int
	MaxStopBytes      int
	MaxSessionBytes   byteSize
	MaxSchemaBytes    byteSize
	MaxSchemaDepth    int
	MaxSchemaEnum     int
	MaxSchemaValue    byteSize
	MaxGrammarNodes   int
	GrammarCacheBytes byteSize
}

// addLimitFlags declares the flags of request-content bounds.
func addLimitFlags(fs *flag.FlagSet, c *limitsConfig) {
	d := nextaction.DefaultSchemaLimits
	c.MaxSchemaBytes, c.MaxSchemaValue = byteSize(d.MaxBytes), byteSize(d.MaxLiteralBytes)
	c.GrammarCacheBytes = nextaction.DefaultGrammarCacheBytes
	fs.DurationVar(&c.HeaderTimeout, "header-timeout", server.DefaultHeaderTimeout, "longest a request's header block may take to arrive: from the connection's start for its first request, from the first byte for later ones (408 above)")
	fs.IntVar(&c.MaxMessages, "max-messages", server.DefaultMaxMessages, "most messages of a chat request, and of a next-action prompt (400 above)")
	fs.IntVar(&c.MaxStopBytes, "max-stop-bytes", server.DefaultMaxStopBytes, "longest stop string, in bytes (400 above)")
	fs.Var(&c.MaxSessionBytes, "max-session-bytes", "most text a session keeps: persona and history (413 above; 0: 16 bytes per token of --ctx)")
	fs.Var(&c.MaxSchemaBytes, "max-schema-bytes", "largest response_format JSON schema (400 above)")
	fs.IntVar(&c.MaxSchemaDepth, "max-schema-depth", d.MaxDepth, "deepest nesting of a JSON schema's properties and items (400 above)")
	fs.IntVar(&c.MaxSchemaEnum, "max-schema-enum", d.MaxEnum, "most values of one JSON schema enum (400 above)")
	fs.Var(&c.MaxSchemaValue, "max-schema-value-bytes", "largest JSON schema const or enum value, as JSON (400 above)")
	fs.IntVar(&c.MaxGrammarNodes, "max-grammar-nodes", d.MaxNodes, "largest grammar a JSON schema may compile to, in nodes (about 60 bytes each; 400 above)")
	fs.Var(&c.GrammarCacheBytes, "grammar-cache-bytes", "memory the cache of compiled grammars may hold")
}

func (c limitsConfig) validate() error {
	switch {
	case c.HeaderTimeout <= 0:
		return fmt.Errorf("--header-timeout must be positive, got %s", c.HeaderTimeout)
	case c.MaxMessages < 1 || c.MaxStopBytes < 1:
		return fmt.Errorf("--max-messages and --max-stop-bytes must be positive")
	case c.MaxSchemaBytes < 1 || c.MaxSchemaDepth < 1 || c.MaxSchemaEnum < 1 || c.MaxSchemaValue < 1 || c.MaxGrammarNodes < 1:
		return fmt.Errorf("--max-schema-bytes, --max-schema-depth, --max-schema-enum, --max-schema-value-bytes and --max-grammar-nodes must be positive")
	case c.GrammarCacheBytes < 1<<20:
		return fmt.Errorf("--grammar-cache-bytes must be at least 1MiB, got %d", c.GrammarCacheBytes)
	case c.MaxSessionBytes < 0:
		return fmt.Errorf("--max-session-bytes must not be negative")
	}
	return nil
}

// schemaLimits are the compiler's limits from the flags.
func (c limitsConfig) schemaLimits() nextaction.SchemaLimits {
	return nextaction.SchemaLimits{
		MaxBytes: int(c.MaxSchemaBytes), MaxDepth: c.MaxSchemaDepth, MaxEnum: c.MaxSchemaEnum,
		MaxLiteralBytes: int(c.MaxSchemaValue), MaxNodes: c.MaxGrammarNodes,
	}
}
