#!/usr/bin/env bash
# FQE run long enough to settle (issue "claims", item 2) on one lent GPU: builds the tasks' datasets
# side by side on the machine's CPU, then runs `empo-ope --estimators fqe` on each task's shipped
# suite, one task after another (the suite's 12 policies fitted together in stacked weights), and
# copies each output folder (values.csv, metrics.json, report.md, fqe_curve.csv and .png) into
# $OUT/ope-<task>-fqe<STEPS>. The true values are the suites' cached ones (no env episodes). From the
# repository root, carrying .whl (see install.sh):
#   bash benchmarks/gpu/fqe_runs.sh
#   TASKS=halfcheetah-medium STEPS=400000 bash benchmarks/gpu/fqe_runs.sh
# A task starts only while at least MIN_TASK seconds are left before DEADLINE, and is stopped at
# DEADLINE (an FQE cut short writes nothing: size STEPS from the `fqe` section of bench_gpu.py).
# The device's dataset build can differ from the CPU machine's in the last bits (README, "Data"):
# each build's checksum line is printed for comparison with `empo-data info TASK` there.
# Knobs (environment): TASKS (halfcheetah-medium walker2d-medium hopper-medium), STEPS (200000),
# SIZE (dataset steps, 1000000), DEADLINE (seconds from the start: 540), MIN_TASK (120), DEVICE
# (cuda). Exit status: 4 when a dataset build failed, 5 when no time was left, 1 when a task failed
# or was stopped.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/empo-fqe-out}"
WORK="${WORK:-/tmp/empo-fqe}"
TASKS="${TASKS:-halfcheetah-medium walker2d-medium hopper-medium}"; STEPS="${STEPS:-200000}"
SIZE="${SIZE:-1000000}"; DEADLINE="${DEADLINE:-540}"; MIN_TASK="${MIN_TASK:-120}"; DEVICE="${DEVICE:-cuda}"
. benchmarks/gpu/common.sh
# shellcheck disable=SC2086
build_datasets "$SIZE" $TASKS
status=0
for task in $TASKS; do
    time_left "$MIN_TASK"
    folder="ope-$task-fqe$STEPS"
    started_task=$(elapsed)
    timeout -k 10 "$LIMIT" python3 -m empo.cli.ope --task "$task" --policies suite --estimators fqe --fqe-steps "$STEPS" \
        --device "$DEVICE" --threads 1 --out "$WORK/$folder" --no-progress > "$WORK/$folder.log" 2>&1 || status=1
    tail -n 4 "$WORK/$folder.log"
    echo "$task: $(( $(elapsed) - started_task )) s"
    if [ -d "$WORK/$folder" ]; then cp -r "$WORK/$folder" "$OUT/"; fi
    cp "$WORK/$folder.log" "$OUT/" 2>/dev/null
done
exit "$status"
