package llamacpp_test

import (
	"fmt"
	"log/slog"
	"os"
	"testing"

	"go.uber.org/goleak"
)

var tempRoot string

func TestMain(m *testing.M) {
	// TestMalformedModelsNeverAbort runs this binary to load one file.
	if path := os.Getenv(loadModelEnv); path != "" {
		os.Exit(loadOnly(path))
	}
	// TestMemoryEstimateBoundsLlamaCpp runs it to read llama.cpp's buffers.
	if arg := os.Getenv(memoryEnv); arg != "" {
		os.Exit(loadAndLog(arg))
	}
	// llama.cpp's log lines go through log/slog's default level.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	dir, err := os.MkdirTemp("", "nextact-llamacpp-test")
	if err != nil {
		panic(err)
	}
	tempRoot = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		// The schedulers the tests run on the engine are all closed.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left after the tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}
