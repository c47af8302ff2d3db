#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh needs on a GPU machine that has no Go
# toolchain and no network, into gpu-bundle/ (ignored by git; carried by
# the device tool, see docs/GPU.md):
#   nextact.xz                bin/nextact
#   nextact-cmd.test.xz       go test -c ./cmd/nextact (the TestGPU* checks)
#   llamacpp.test.xz          go test -c ./runtime/llamacpp (the engine's tests)
#   batching.test.xz          go test -c ./batching (the host-step benchmark)
#   batching-before.test.xz   the same benchmark on the scheduler before the GPU
#                             step-loop work (commit c74a939: copied rows, serial sampling)
#   ggml-src.tar.xz           the ollama module's ggml sources, for make cuda's build.sh
# The binaries are built for x86-64-v3 (AVX2): the GPU machines' CPUs are
# Intel Xeons, and a -march=native build from an AMD EPYC may not run there.
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu-bundle
rm -rf "$out"
mkdir -p "$out"

export CGO_ENABLED=1
export CGO_CPPFLAGS="-I$PWD/runtime/llamacpp/cinclude"
export CGO_CFLAGS="-O3 -march=x86-64-v3"
export CGO_CXXFLAGS="-O3 -march=x86-64-v3"
go=${GO:-go}
ldflags="-s -w"

echo "gpu-bundle: building for x86-64-v3 (the first build recompiles llama.cpp: minutes)"
"$go" build -ldflags "$ldflags" -o "$out/nextact" ./cmd/nextact
"$go" test -c -ldflags "$ldflags" -o "$out/nextact-cmd.test" ./cmd/nextact
"$go" test -c -ldflags "$ldflags" -o "$out/llamacpp.test" ./runtime/llamacpp
"$go" test -c -ldflags "$ldflags" -o "$out/batching.test" ./batching
base=c74a939
before=$(mktemp -d)
git archive "$base" | tar -x -C "$before"
# the benchmark file, less the field that commit lacks
sed 's/, SampleWorkers: workers}/}/' batching/hoststep_bench_test.go >"$before/batching/hoststep_bench_test.go"
(cd "$before" && "$go" test -c -ldflags "$ldflags" -o "$OLDPWD/$out/batching-before.test" ./batching)
rm -rf "$before"
"$go" mod download github.com/ollama/ollama
mod=$("$go" list -m -f '{{.Dir}}' github.com/ollama/ollama)
tar -C "$mod" --exclude='ggml-vulkan' --exclude='ggml-metal' -cJf "$out/ggml-src.tar.xz" ml/backend/ggml/ggml
xz -T0 -6 "$out/nextact" "$out/nextact-cmd.test" "$out/llamacpp.test" "$out/batching.test" "$out/batching-before.test"
ls -l "$out"
total=$(du -sm "$out" | cut -f1)
echo "gpu-bundle: ${total} MiB (the device tool carries at most 64 MiB with the working tree)"
