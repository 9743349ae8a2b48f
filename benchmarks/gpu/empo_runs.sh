#!/usr/bin/env bash
# EMPO learning runs side by side on one GPU: builds hopper-medium, fits one ETM per seed (in
# parallel), then runs one `empo-train` per (seed, coefficient) in parallel (CUDA graph on), and
# copies each run's progress.csv and summary.json into $OUT. From the repository root, carrying
# .whl (see install.sh):
#   bash benchmarks/gpu/empo_runs.sh                      # the authors' mechanism (issue "Fidelity")
#   AUTHORS=false MODEL_PRESET=quick-warm COEFS=10 SEEDS="2 3" BENCH_SECTIONS="env warm" \
#       bash benchmarks/gpu/empo_runs.sh                  # the quick-warm ETM (issue "Speed")
# Knobs (environment): COEFS ("2.0 5.0"), SEEDS (0), PRESET (training preset, quick), MODEL_PRESET
# (the ETM's preset, default PRESET), SIZE (dataset steps, 1000000), DEVICE (auto), RUNTIME_GRAPH
# (true), AUTHORS (true: the ETM fit with the authors' loss sum, inference clamp 0.5 and step
# schedule, and the authors' penalty mechanism, as benchmarks/results/fidelity-hopper-medium-cpu.md;
# false: the presets as they are), MODEL_ROOT (a carried folder holding one ETM fit per seed as
# etm-s<SEED>, made elsewhere: no fits here, and the runs use these; MODEL_PRESET and AUTHORS'
# ETM settings then do not apply), BENCH_SECTIONS (bench_gpu.py sections timed on the idle GPU
# while the dataset is built; their figures go to $OUT/bench), DEADLINE (seconds from the start by
# which the runs are stopped, so that their files still come back: 440; no runs start with less
# than 30 s left); BENCH_PROFILE
# (bench_gpu.py's sizes: --profile gpu; --cpu-smoke to try the script on a CPU). Exit status: 4 when
# an ETM fit failed, 5 when no time was left for the runs, 1 when a run failed or was stopped.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/empo-runs-out}"
WORK="${WORK:-/tmp/empo-runs}"
COEFS="${COEFS:-2.0 5.0}"; SEEDS="${SEEDS:-${SEED:-0}}"; PRESET="${PRESET:-quick}"; MODEL_PRESET="${MODEL_PRESET:-$PRESET}"
SIZE="${SIZE:-1000000}"; DEVICE="${DEVICE:-auto}"; RUNTIME_GRAPH="${RUNTIME_GRAPH:-true}"; DEADLINE="${DEADLINE:-440}"
AUTHORS="${AUTHORS:-${AUTHORS_ETM:-true}}"; BENCH_SECTIONS="${BENCH_SECTIONS:-}"; BENCH_PROFILE="${BENCH_PROFILE:---profile gpu}"
. benchmarks/gpu/common.sh
bench_pid=""
if [ -n "$BENCH_SECTIONS" ]; then  # the GPU is idle while the dataset is built on the CPU
    # shellcheck disable=SC2086
    python3 benchmarks/gpu/bench_gpu.py $BENCH_PROFILE --sections $BENCH_SECTIONS --out-dir "$OUT/bench" > "$OUT/bench-log.txt" 2>&1 &
    bench_pid=$!
fi
python3 -m empo.cli.data build hopper-medium --size "$SIZE" --no-progress 2>&1 | grep -v Warning | tail -n 2
python3 -m empo.cli.data info hopper-medium | tail -n 1  # compare with `empo-data info` where the models were fit
echo "dataset: $(elapsed) s"
if [ -n "$bench_pid" ]; then wait "$bench_pid"; echo "bench (rc $?): $(elapsed) s"; fi
ETM_SETS=(); PENALTY_SETS=()
if [ "$AUTHORS" = true ]; then  # the authors' settings, as the CPU fidelity runs used
    ETM_SETS=(--set etm.loss_reduction=sum --set etm.rollout_langevin.grad_clip=0.5 --set etm.eval_langevin.grad_clip=0.5
              --set etm.rollout_langevin.step_size_reaches_end=true --set etm.eval_langevin.step_size_reaches_end=true)
    PENALTY_SETS=(--set empo.penalty_at=update --set empo.penalty_decay=true --set empo.alpha_max=1.0)
fi
pids=()
for seed in $SEEDS; do
    if [ -n "${MODEL_ROOT:-}" ]; then  # fit elsewhere and carried
        if [ ! -f "$MODEL_ROOT/etm-s$seed/model.json" ]; then echo "MODEL_ROOT=$MODEL_ROOT has no etm-s$seed/model.json"; exit 4; fi
        rm -rf "$WORK/etm-s$seed" && cp -r "$MODEL_ROOT/etm-s$seed" "$WORK/etm-s$seed"
        continue
    fi
    python3 -m empo.cli.model train --task hopper-medium --model etm --preset "$MODEL_PRESET" --seed "$seed" --device "$DEVICE" \
        "${ETM_SETS[@]}" --no-progress --out "$WORK/etm-s$seed" > "$WORK/etm-s$seed.log" 2>&1 &
    pids+=($!)
done
wait_all "${pids[@]}"; fit_failed=$?
for seed in $SEEDS; do
    [ -n "${MODEL_ROOT:-}" ] && continue
    tail -n 2 "$WORK/etm-s$seed.log"
    cp "$WORK/etm-s$seed/train_log.csv" "$OUT/etm-s$seed-train-log.csv" 2>/dev/null
    cp "$WORK/etm-s$seed/model.json" "$OUT/etm-s$seed-model.json" 2>/dev/null
done
echo "etm fits: $(elapsed) s"
if [ "$fit_failed" != 0 ]; then echo "an ETM fit failed (its log: above); no runs"; exit 4; fi
time_left 30
pids=()
for seed in $SEEDS; do
    for coef in $COEFS; do
        timeout "$LIMIT" python3 -m empo.cli.train --task hopper-medium --preset "$PRESET" --seed "$seed" --device "$DEVICE" \
            --threads 1 --no-progress --model-dir "$WORK/etm-s$seed" --run-dir "$WORK/coef$coef-s$seed" \
            "${PENALTY_SETS[@]}" --set empo.penalty_coef="$coef" --set runtime.cuda_graph="$RUNTIME_GRAPH" \
            > "$WORK/coef$coef-s$seed.log" 2>&1 &
        pids+=($!)
    done
done
wait_all "${pids[@]}"; run_failed=$?  # 124 for a run stopped at DEADLINE (its files are kept)
echo "runs: $(elapsed) s"
for seed in $SEEDS; do
    for coef in $COEFS; do
        tail -n 1 "$WORK/coef$coef-s$seed.log"
        cp "$WORK/coef$coef-s$seed/progress.csv" "$OUT/progress-coef$coef-s$seed.csv" 2>/dev/null
        cp "$WORK/coef$coef-s$seed/summary.json" "$OUT/summary-coef$coef-s$seed.json" 2>/dev/null
    done
done
exit "$run_failed"
