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

# build_datasets SIZE TASK...: builds the tasks' datasets side by side on the machine's CPU (logs in
# $WORK/build-TASK.log) and prints each build's last line and checksum: the device's build can differ
# from the CPU machine's (README, "Data"), so compare with `empo-data info TASK` there. Stops the
# script (exit 4) when a build failed.
build_datasets() {
    local size=$1 task failed
    local pids=()
    shift
    for task in "$@"; do
        python3 -m empo.cli.data build "$task" --size "$size" --no-progress > "$WORK/build-$task.log" 2>&1 &
        pids+=($!)
    done
    wait_all "${pids[@]}"; failed=$?
    for task in "$@"; do
        grep -v Warning "$WORK/build-$task.log" | tail -n 1
        python3 -m empo.cli.data info "$task" 2>/dev/null | tail -n 1
    done
    echo "datasets: $(elapsed) s"
    if [ "$failed" != 0 ]; then echo "a dataset build failed (its log: above)"; exit 4; fi
}
