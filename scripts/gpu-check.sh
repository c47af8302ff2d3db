#!/usr/bin/env bash
# One run on a GPU machine that checks nextact's GPU path and prints every
# figure: builds the CUDA backend (scripts/cuda/build.sh, with the
# batch-invariance patches), runs the engine's tests, serves a
# Llama-3.2-1B-shaped and a Llama-3-8B-shaped generated model (Q8_0,
# 128,256-token vocabulary), runs the decode sweep (1/8/64/128 concurrent),
# the batch-invariance check (64 prompts alone vs batched) with
# --deterministic on and off, the logits-copy cost, and `nextact bench`
# (sessions and actions). Needs no Go and no network: run `make gpu-bundle`
# first and carry gpu-bundle/ (docs/GPU.md says how, through the device
# tool). Meant to finish in under 8 minutes on one H200 with 16 cores.
#
#   bash scripts/gpu-check.sh          # files for later go to $OUT (default /tmp/gpu-check-out)
#
# GPU_CHECK_DRY=1 rehearses the script on a CPU machine: no CUDA build,
# small models, short runs (the figures mean nothing).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
t0=$(date +%s)
phase() { echo; echo "== [$(($(date +%s) - t0))s] $*"; }
W=${GPU_CHECK_DIR:-/tmp/gc}
rm -rf "$W"
mkdir -p "$W/bin" "$W/src" "$W/models"
status=0
fail() { echo "GPU-CHECK FAILED: $*"; status=1; }

phase "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv || fail "nvidia-smi"
command -v nvcc >/dev/null && nvcc --version | tail -2
cmake --version | head -1
echo "cores: $(nproc), memory: $(free -g | awk '/Mem:/{print $2}') GiB"

phase "unpack gpu-bundle"
[ -d gpu-bundle ] || { echo "no gpu-bundle/: run make gpu-bundle and carry gpu-bundle"; exit 2; }
for b in nextact nextact-cmd.test llamacpp.test batching.test batching-before.test; do
	xz -dc "gpu-bundle/$b.xz" >"$W/bin/$b" && chmod +x "$W/bin/$b" || fail "unpack $b"
done
tar -xJf gpu-bundle/ggml-src.tar.xz -C "$W/src" || fail "unpack ggml sources"

dry=${GPU_CHECK_DRY:-0}
threads=8 sessions=128 sweep= invariance=
if [ "$dry" = 1 ]; then
	threads=1 sessions=8 sweep=1,8 invariance=8
fi

phase "build the CUDA backend, generate the models (in parallel)"
bg=() # wait for these only: a bare wait would also wait for the log's tee
if [ "$dry" = 1 ]; then
	echo "dry run: no CUDA backend" >"$OUT/cuda-build.log"
	echo 0 >"$W/cuda.rc"
else
	(cd "$repo" && BUILD_DIR="$W/build" timeout 330 bash scripts/cuda/build.sh "$W/src" "$W" >"$OUT/cuda-build.log" 2>&1
		echo $? >"$W/cuda.rc") &
	bg+=($!)
fi
gen() {
	if [ "$dry" = 1 ]; then
		timeout 60 "$W/bin/nextact" gen-model --out "$W/models/$1.gguf" --name "$1"
	else
		timeout 330 "$W/bin/nextact" gen-model --out "$W/models/$1.gguf" --name "$1" "${@:2}" --extra-tokens 127477 --ctx 131072
	fi
}
gen 1b --embd 2048 --layers 16 --heads 32 --kv-heads 8 --ffn 8192 &
bg+=($!)
gen 8b --embd 4096 --layers 32 --heads 32 --kv-heads 8 --ffn 14336 &
bg+=($!)
wait "${bg[@]}"
tail -4 "$OUT/cuda-build.log"
[ "$(cat "$W/cuda.rc" 2>/dev/null)" = 0 ] || { fail "CUDA backend build (see cuda-build.log)"; tail -40 "$OUT/cuda-build.log"; exit 1; }
ls -l "$W/lib/ollama" "$W/models"

# The binaries find the backend in $W/bin/../lib/ollama.
checks() { # label model env... -- test args...
	local label=$1 model=$2
	shift 2
	env NEXTACT_GPU_MODEL="$model" NEXTACT_GPU_LABEL="$label" NEXTACT_GPU_THREADS="$threads" \
		${sweep:+NEXTACT_GPU_SWEEP=$sweep} ${invariance:+NEXTACT_GPU_INVARIANCE_PROMPTS=$invariance} "$@"
}

# show NAME: the interesting lines of $W/NAME.out
show() { grep -E '^GPU-CHECK|^(--- |ok|FAIL|PASS)|panic|_test.go|"device"|offloaded' "$W/$1.out" | cut -c1-400; }

phase "engine tests (runtime/llamacpp, on the GPU)"
(cd "$W" && timeout 120 "$W/bin/llamacpp.test" -test.count=1 -test.timeout 110s -test.v >"$W/engine.out" 2>&1) || fail "engine tests"
show engine

phase "host work of one scheduler step: 128 sequences x 128,256 tokens, logits returned at once (this CPU)"
# before (c74a939: a copied row per sequence, sampled one after the other) and after, alternately
for r in 1 2 3; do
	timeout 30 "$W/bin/batching-before.test" -test.run '^$' -test.bench 'HostStep/greedy-copy-serial$' -test.benchtime 20x
	timeout 30 "$W/bin/batching.test" -test.run '^$' -test.bench 'HostStep/greedy$|LogitsRead' -test.benchtime 30x
done >"$W/hoststep.out" 2>&1 || fail "host-step benchmark"
grep -E '^Benchmark' "$W/hoststep.out" | sed -e 's/^/GPU-CHECK host /' -e 's/greedy-copy-serial/before-c74a939-greedy/' | tee "$W/hoststep-figures.out"

phase "1B: sweep, invariance, logits cost (--deterministic)"
checks 1b "$W/models/1b.gguf" timeout 150 "$W/bin/nextact-cmd.test" -test.run 'TestGPU' -test.count=1 -test.v >"$W/1b.out" 2>&1 || fail "1B checks"
show 1b

phase "1B: sweep and invariance (--deterministic=false)"
checks 1b "$W/models/1b.gguf" NEXTACT_GPU_DETERMINISTIC=0 timeout 100 "$W/bin/nextact-cmd.test" -test.run 'TestGPUServe' -test.count=1 -test.v >"$W/1b-fast.out" 2>&1 || fail "1B checks, fast"
show 1b-fast

phase "8B: sweep at 1 and 64, invariance of 16 (--deterministic)"
checks 8b "$W/models/8b.gguf" NEXTACT_GPU_SWEEP=1,64 NEXTACT_GPU_INVARIANCE_PROMPTS=16 timeout 120 "$W/bin/nextact-cmd.test" -test.run 'TestGPUServe' -test.count=1 -test.v >"$W/8b.out" 2>&1 || fail "8B checks"
show 8b

phase "nextact bench on the 1B model: 128 shopper sessions, then the stateless actions API"
"$W/bin/nextact" serve --addr 127.0.0.1:0 --model "$W/models/1b.gguf" --slots 128 --ctx 8192 --threads "$threads" \
	--max-queue-wait 0 --request-timeout 5m --log-level info 2>"$W/serve.log" &
serve=$!
url=
for _ in $(seq 240); do # the port it got is in its "listening" log line
	addr=$(grep '"msg":"listening"' "$W/serve.log" | grep -o '"addr":"[^"]*"' | cut -d'"' -f4)
	if [ -n "$addr" ] && curl -sf "http://$addr/health/ready" >"$W/ready.json" 2>/dev/null; then
		url=http://$addr
		break
	fi
	kill -0 "$serve" 2>/dev/null || break
	sleep 0.5
done
[ -n "$url" ] || { fail "nextact serve did not become ready"; tail -20 "$W/serve.log"; }
echo "serving at $url; readiness: $(cat "$W/ready.json" 2>/dev/null)"
grep -E '"device"|"model loaded"' "$W/serve.log" | head -8
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 >"$W/util.csv" 2>/dev/null &
smi=$!
timeout 80 "$W/bin/nextact" bench --url "$url" --mode sessions --sessions "$sessions" --steps 4 --min-steps 4 \
	--page-tokens 600 --duration 60s --out "$W/bench-sessions" | tee "$W/bench-sessions.log" || fail "bench sessions"
timeout 55 "$W/bin/nextact" bench --url "$url" --mode actions --sessions "$sessions" --steps 3 --min-steps 3 \
	--page-tokens 600 --duration 40s --out "$W/bench-actions" | tee "$W/bench-actions.log" || fail "bench actions"
for m in sessions actions; do
	grep -E '^ +(steps|rate|tokens|ttft|itl|e2e) ' "$W/bench-$m.log" | sed "s/^ */GPU-CHECK 1b bench $m /" >"$W/bench-$m.out"
done
kill "$smi" 2>/dev/null
awk -F', ' '{u+=$1; n++; if ($1>m) m=$1} END {if (n) printf "GPU-CHECK 1b bench gpu-utilization mean=%.0f%% max=%d%% samples=%d\n", u/n, m, n}' "$W/util.csv" | tee "$W/util.out"
curl -s "$url/metrics" | grep -E '^nextact_inter_token_latency_seconds_(sum|count)|^nextact_gpu_(utilization|memory_used)' | head -8
kill "$serve" 2>/dev/null
wait "$serve" 2>/dev/null # one pid: does not wait for the tee
cp "$W/bench-sessions/report.json" "$OUT/bench-sessions.json" 2>/dev/null
cp "$W/bench-actions/report.json" "$OUT/bench-actions.json" 2>/dev/null

phase "summary"
grep -h '^GPU-CHECK' "$W"/*.out | tee "$OUT/summary.txt"
for f in "$W"/bench-*/report.json; do [ -f "$f" ] && echo "bench report: $f"; done
echo "finished in $(($(date +%s) - t0)) s, status $status"
exit $status
