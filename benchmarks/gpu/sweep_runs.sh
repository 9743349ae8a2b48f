#!/usr/bin/env bash
# A slice of the learning-quality sweep (issue "Sweeps") on one lent GPU: builds the tasks' datasets
# side by side on the machine's CPU, runs `empo-sweep` on the GPU (CUDA graph on, WORKERS runs at
# once), stops it at DEADLINE, and brings back the run folders without their checkpoints as
# $OUT/sweep.tar.gz, with empo-report's report.md beside it. From the repository root, carrying .whl
# (see install.sh):
#   TASKS=halfcheetah-medium ALGOS="empo mopo" SEEDS="0 1" bash benchmarks/gpu/sweep_runs.sh
# On an H100 a quick run takes about 1.8 s an epoch with two runs side by side (about 0.8 s of it on
# the GPU, which the runs take in turns), so about 3 runs of 120 epochs fit in one device call with
# the dataset builds. Then, here: `mkdir -p DIR && tar xzf sweep.tar.gz -C DIR` and
# `empo-report DIR/sweep ...` with the other slices (a run interrupted at DEADLINE comes back
# unfinished and cannot resume elsewhere: its checkpoint stays on the device).
# Knobs (environment): TASKS (hopper-medium), ALGOS (empo mopo), SEEDS (0), PRESET (quick), WORKERS (2),
# SIZE (dataset steps, 1000000), DEADLINE (seconds from the start by which the sweep is stopped: 540),
# DEVICE (cuda). Exit status: 4 when a dataset build failed, 5 when no time was left for runs.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/empo-sweep-out}"
WORK="${WORK:-/tmp/empo-sweep}"
TASKS="${TASKS:-hopper-medium}"; ALGOS="${ALGOS:-empo mopo}"; SEEDS="${SEEDS:-0}"; PRESET="${PRESET:-quick}"
WORKERS="${WORKERS:-2}"; SIZE="${SIZE:-1000000}"; DEADLINE="${DEADLINE:-540}"; DEVICE="${DEVICE:-cuda}"
GRAPH=true; [ "$DEVICE" = cpu ] && GRAPH=false  # the CUDA graph needs CUDA (a CPU try of the script)
. benchmarks/gpu/common.sh
# shellcheck disable=SC2086
build_datasets "$SIZE" $TASKS
time_left 60
# SIGINT, as Ctrl-C: each run stops at its epoch and the index records it as interrupted
# shellcheck disable=SC2086
timeout -s INT -k 30 "$LIMIT" python3 -m empo.cli.sweep --tasks $TASKS --algos $ALGOS --seeds $SEEDS --presets "$PRESET" \
    --set runtime.cuda_graph="$GRAPH" --device "$DEVICE" --workers "$WORKERS" --threads-per-run 1 \
    --out "$WORK/sweep" --no-progress 2>&1 | tail -n 40
echo "sweep: $(elapsed) s"
python3 -m empo.cli.report "$WORK/sweep" --out "$WORK/sweep/report" 2>&1 | tail -n 3
cp "$WORK/sweep/report/report.md" "$OUT/report.md" 2>/dev/null
tar czf "$OUT/sweep.tar.gz" --exclude=checkpoint.pt --exclude=.sweep-started --exclude=tb -C "$WORK" sweep
