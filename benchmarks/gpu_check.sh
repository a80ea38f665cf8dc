#!/usr/bin/env bash
# The GPU speed figures (docs/speed.md's targets) in one call on a GPU machine, with nothing
# installed: the machine's own JAX, Equinox, Optax, Typer… and PYTHONPATH=<repository root>
# (no pip install: that machine reaches no package index). Its JAX was 0.11.2 (Python 3.12,
# NumPy 2.5) when last listed, newer than pyproject.toml's range (< 0.11) and never tested
# here: a step that fails prints its error in full, so a version problem can be read off.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine; results under $OUT (or ./gpu-check)
#
# What it measures, most wanted first (each step under its own time limit, so one hang costs
# only its share; at most 400 s in all, which keeps the check under 10 minutes with time left
# for a rerun; not yet run on a GPU). It stops at once if JAX finds no GPU (JAX
# would silently fall back to the CPU); GPU_CHECK_ALLOW_CPU=1 lets it run on a CPU.
#   1. which devices JAX sees;
#   2. s / meta-iteration of recipes/sine.yaml at meta-batch 256 and 4,096, each process one
#      META_BATCH:CHUNK pair (chunks of 256 tasks: a GPU wants large kernels; then the
#      recipe's 16, and the whole batch in one chunk), 60 s each — one SET pulse + one read
#      over 100 M devices (device_throughput.py) comes after the first of them;
#   3. write-verify and single-shot programming of 10 M devices (program_throughput.py).
# At most 8 files come back from $OUT: this writes 1 + configs + 2 (7 by default).
# Sizes can be made smaller to try the script on a CPU first:
#   GPU_CHECK_ALLOW_CPU=1 GPU_CHECK_CONFIGS="16:8 16:16" GPU_CHECK_DEVICES=100000 \
#   GPU_CHECK_PROGRAM_DEVICES=100000 GPU_CHECK_ITERATIONS=2 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-gpu-check}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python="${PYTHON:-python3}"
configs="${GPU_CHECK_CONFIGS:-256:256 4096:256 256:16 4096:4096}"
devices="${GPU_CHECK_DEVICES:-100000000}"
program_devices="${GPU_CHECK_PROGRAM_DEVICES:-10000000}"
iterations="${GPU_CHECK_ITERATIONS:-5}"
status=0

step() {  # step NAME LIMIT_S COMMAND... : run, log to $out/NAME.txt, remember a failure
    local name="$1" limit="$2"
    shift 2
    echo "== $name (limit ${limit} s): $*" | tee "$out/$name.txt"
    local start=$SECONDS
    timeout -k 10 "$limit" "$@" 2>&1 | grep --line-buffered -v "^WARNING: All log messages before absl" | tee -a "$out/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$out/$name.txt"
    [ "$rc" -eq 0 ] || status=1
}

step devices 30 "$python" -c "import jax; print(jax.__version__, jax.default_backend(), jax.devices())"
if ! grep -q " gpu " "$out/devices.txt" && [ "${GPU_CHECK_ALLOW_CPU:-0}" != 1 ]; then
    echo "JAX found no GPU (see $out/devices.txt); stopping before the benchmarks" | tee -a "$out/devices.txt"
    exit 1
fi
first=1
for config in $configs; do
    meta_batch="${config%%:*}" chunk="${config##*:}"
    # --child: the measurement in this process, its errors printed (the parent would hide them)
    step "meta-train-$meta_batch-chunk-$chunk" 60 "$python" benchmarks/meta_train_speed.py "$meta_batch" --iterations "$iterations" --chunk-tasks "$chunk" --child
    if [ "$first" = 1 ]; then
        first=0
        step device-throughput 60 "$python" benchmarks/device_throughput.py "$devices" 10 3
    fi
done
step program-throughput 40 "$python" benchmarks/program_throughput.py "$program_devices" 2
exit "$status"
