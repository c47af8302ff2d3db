#!/usr/bin/env bash
# Builds ggml's CUDA backend for nextact: copies the ggml sources of the
# ollama module, applies scripts/cuda/patches (batch-invariant kernels,
# switched on at run time by nextact --deterministic), and installs
# libggml-cuda.so and libggml-base.so into OUT/lib/ollama, where
# OUT/bin/nextact finds them with no environment variable.
#
#   scripts/cuda/build.sh SRC OUT
#
# SRC: the ollama module's directory (make cuda passes `go list -m` of
# github.com/ollama/ollama), or any folder holding its ml/backend/ggml/ggml.
# Environment:
#   CUDA_ARCHS  CMake CUDA architectures, e.g. "90" or "80;86;89;90".
#               Default: the compute capabilities of the GPUs present
#               (nvidia-smi), else 80;86;89;90 (Ampere A100/RTX 30, Ada,
#               Hopper) plus 100;120 (Blackwell) when nvcc is 12.8 or newer.
#   CUDACXX     nvcc to use (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc).
#   BUILD_DIR   scratch folder (default: OUT/build/cuda).
#   JOBS        parallel compile jobs (default: all cores).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "make cuda: $*" >&2; exit 2; }

[ $# -eq 2 ] || die "usage: $0 OLLAMA_MODULE_DIR OUT_DIR"
src=$1
out=$(mkdir -p "$2" && cd "$2" && pwd)
ggml=$src/ml/backend/ggml/ggml
[ -f "$ggml/src/ggml-cuda/CMakeLists.txt" ] || die "no ggml CUDA sources under $src (want ml/backend/ggml/ggml/src/ggml-cuda)"

nvcc=${CUDACXX:-}
if [ -z "$nvcc" ]; then
	nvcc=$(command -v nvcc || true)
	[ -n "$nvcc" ] || { [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc; } || true
fi
if [ -z "$nvcc" ] || ! "$nvcc" --version >/dev/null 2>&1; then
	cat >&2 <<'EOF'
make cuda: nvcc (the CUDA toolkit's compiler) was not found.
Install the CUDA toolkit, 12.x or 13.x (NVIDIA's packages: https://developer.nvidia.com/cuda-downloads,
e.g. apt-get install cuda-toolkit-12-8 from NVIDIA's repository; Debian's nvidia-cuda-toolkit in the
non-free component is 11.8, too old for Blackwell), then put nvcc on PATH or set CUDACXX=/path/to/nvcc.
CMake 3.21 or newer and a C++17 compiler are needed too (apt-get install cmake g++; ninja-build speeds it up).
EOF
	exit 2
fi
command -v cmake >/dev/null || die "cmake (3.21 or newer) is required: apt-get install cmake"
cmake_version=$(cmake --version | head -1 | grep -oE '[0-9]+\.[0-9]+' | head -1)
[ "$(printf '%s\n3.21\n' "$cmake_version" | sort -V | head -1)" = 3.21 ] || die "cmake $cmake_version is too old: 3.21 or newer is required"

nvcc_version=$("$nvcc" --version | grep -oE 'release [0-9]+\.[0-9]+' | grep -oE '[0-9]+\.[0-9]+')
archs=${CUDA_ARCHS:-}
if [ -z "$archs" ] && command -v nvidia-smi >/dev/null; then
	archs=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d '. ' | grep -E '^[0-9]+$' | sort -u | paste -sd';' || true)
fi
if [ -z "$archs" ]; then
	archs="80;86;89;90"
	if [ "$(printf '%s\n12.8\n' "$nvcc_version" | sort -V | head -1)" = 12.8 ]; then
		archs="$archs;100;120"
	fi
fi

build=${BUILD_DIR:-$out/build/cuda}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 4)}
echo "make cuda: nvcc $nvcc_version ($nvcc), cmake $cmake_version, architectures $archs, $jobs jobs"
echo "make cuda: sources $ggml"

# A writable copy: the module cache is read-only, and the patches edit it.
rm -rf "$build/src"
mkdir -p "$build/src/ml/backend/ggml"
cp -r "$ggml" "$build/src/ml/backend/ggml/ggml"
chmod -R u+w "$build/src"
apply() { # patch, else git apply (either is usually there with a compiler)
	if command -v patch >/dev/null; then
		patch -s -p1 -d "$build/src" <"$1"
	elif command -v git >/dev/null; then
		git -C "$build/src" apply -p1 "$1"
	else
		die "neither patch nor git is installed: apt-get install patch"
	fi
}
for p in "$here"/patches/*.patch; do
	echo "make cuda: patch $(basename "$p")"
	apply "$p" || die "$(basename "$p") does not apply to these sources"
done

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
rm -rf "$build/cmake"
cmake -S "$here" -B "$build/cmake" "${generator[@]}" \
	-DNEXTACT_GGML_SOURCE="$build/src" \
	-DCMAKE_CUDA_COMPILER="$nvcc" \
	-DCMAKE_CUDA_ARCHITECTURES="$archs"
cmake --build "$build/cmake" --target ggml-cuda --parallel "$jobs"
rm -f "$out"/lib/ollama/libggml-cuda.so "$out"/lib/ollama/libggml-base.so*
cmake --install "$build/cmake" --component nextact-cuda --prefix "$out"
echo "make cuda: installed:"
ls -l "$out"/lib/ollama/
