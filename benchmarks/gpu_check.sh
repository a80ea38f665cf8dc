#!/usr/bin/env bash
# Issue 10's GPU figures in one call of a lent accelerator (the `device` tool), from the
# repository root, with nothing installed: the machine's own JAX, Equinox, Optax, Typer… and
# PYTHONPATH=. (no pip install: that machine reaches no package index).
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine; results under $OUT (or ./gpu-check)
#
# What it measures (each step under its own time limit, so one hang costs only its share;
# at most 520 s in all, inside the device tool's 600 s per command; not yet run on a GPU):
#   1. which devices JAX sees;
#   2. s / meta-iteration of recipes/sine.yaml at meta-batch 256 and 4,096, each process one
#      META_BATCH:CHUNK pair (the recipe's chunks of 16 tasks, and larger ones: a GPU wants
#      large kernels);
#   3. one SET pulse + one read over 100 M devices (device_throughput.py);
#   4. write-verify and single-shot programming of 10 M devices (program_throughput.py).
# Sizes can be made smaller to try the script on a CPU first:
#   GPU_CHECK_CONFIGS="16:8 16:16" GPU_CHECK_DEVICES=100000 \
#   GPU_CHECK_PROGRAM_DEVICES=100000 GPU_CHECK_ITERATIONS=2 bash benchmarks/gpu_check.sh
set -uo pipefail

out="${OUT:-gpu-check}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python="${PYTHON:-python3}"
configs="${GPU_CHECK_CONFIGS:-256:16 256:256 4096:256 4096:4096}"
devices="${GPU_CHECK_DEVICES:-100000000}"
program_devices="${GPU_CHECK_PROGRAM_DEVICES:-10000000}"
iterations="${GPU_CHECK_ITERATIONS:-5}"
status=0

step() {  # step NAME LIMIT_S COMMAND... : run, log to $out/NAME.txt, remember a failure
    local name="$1" limit="$2"
    shift 2
    echo "== $name (limit ${limit} s): $*" | tee "$out/$name.txt"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | grep -v "^WARNING: All log messages before absl" | tee -a "$out/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$out/$name.txt"
    [ "$rc" -eq 0 ] || status=1
}

step devices 30 "$python" -c "import jax; print(jax.__version__, jax.default_backend(), jax.devices())"
for config in $configs; do
    meta_batch="${config%%:*}" chunk="${config##*:}"
    step "meta-train-$meta_batch-chunk-$chunk" 90 "$python" benchmarks/meta_train_speed.py "$meta_batch" --iterations "$iterations" --chunk-tasks "$chunk"
done
step device-throughput 80 "$python" benchmarks/device_throughput.py "$devices" 10 3
step program-throughput 50 "$python" benchmarks/program_throughput.py "$program_devices" 2
exit "$status"
