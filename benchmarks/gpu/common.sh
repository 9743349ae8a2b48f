#!/usr/bin/env bash
# Sourced by the device scripts that work under $WORK (empo_runs.sh, sweep_runs.sh), from the
# repository root with OUT, WORK and DEADLINE set: installs the carried wheels and the project
# (install.sh), keeps datasets and models under $WORK, and starts the clock DEADLINE counts from.
mkdir -p "$OUT" "$WORK"
started=$(date +%s)
. benchmarks/gpu/install.sh || exit 3
export EMPO_HOME="$WORK/home" MINARI_DATASETS_PATH="$WORK/minari"

elapsed() { echo $(( $(date +%s) - started )); }

# wait_all PID...: waits for each; fails when any of them failed
wait_all() {
    local pid failed=0
    for pid in "$@"; do wait "$pid" || failed=1; done
    return "$failed"
}

# time_left MIN: sets LIMIT to the seconds left before DEADLINE and stops the script (exit 5) when
# fewer than MIN are left: `timeout 0` would not limit the runs at all, and their files only come
# back if they stop in time
time_left() {
    LIMIT=$(( DEADLINE - $(elapsed) ))
    if [ "$LIMIT" -lt "$1" ]; then echo "less than $1 s left before DEADLINE=$DEADLINE: no runs"; exit 5; fi
    echo "runs get $LIMIT s"
}
