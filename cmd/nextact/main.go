// Command nextact is the composition root of the nextact inference server:
// it reads flags and NEXTACT_* environment variables, wires the engine, the
// scheduler and the HTTP server together, and runs them.
//
//	nextact serve [flags]   serve a model (the embedded default without --model)
//	nextact bench [flags]   drive simulated shoppers against a server and report
//	nextact eval [flags]    the paper's accuracy metrics on recorded sessions
//	nextact gen-eval-data   write a generated evaluation data set (JSONL and Parquet)
//	nextact gen-model       write a seeded random-weight GGUF
//	nextact version         print the version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := serve(ctx, args[1:], stderr); err != nil {
			fmt.Fprintln(stderr, "nextact serve:", err)
			return 1
		}
		return 0
	case "bench":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runBench(ctx, args[1:], stdout, stderr)
	case "eval":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runEval(ctx, args[1:], stdout, stderr)
	case "gen-eval-data":
		return runGenEvalData(args[1:], stdout, stderr)
	case "gen-model":
		return runGenModel(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "nextact", version)
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "nextact: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: nextact <command> [flags]

commands:
  serve     serve a GGUF model over HTTP (the embedded default without --model)
  bench     drive simulated shoppers against a server; see docs/BENCH.md
  eval      next-action accuracy and session-outcome F1 on recorded sessions; see docs/EVAL.md
  gen-eval-data  write a generated evaluation data set (JSONL and OPeRA Parquet)
  gen-model write a seeded random-weight GGUF (e.g. a bigger model to benchmark)
  version   print the version

Run 'nextact serve -h' for the serve flags; each flag also reads NEXTACT_<NAME>
from the environment (e.g. NEXTACT_ADDR, NEXTACT_MODEL, NEXTACT_SLOTS).
`)
}
