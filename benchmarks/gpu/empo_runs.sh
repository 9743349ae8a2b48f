#!/usr/bin/env bash
# EMPO on the quick preset with the authors' penalty mechanism, several coefficients side by side
# on one GPU (issue "Fidelity"): builds hopper-medium, fits one quick ETM, then runs one
# `empo-train` per coefficient in parallel (CUDA graph on), and copies each run's progress.csv and
# summary.json into $OUT. From the repository root, carrying .whl (see install.sh):
#   bash benchmarks/gpu/empo_runs.sh
# Knobs (environment): COEFS ("2.0 5.0"), SEED (0), PRESET (quick), SIZE (dataset steps, 1000000),
# DEVICE (auto), RUNTIME_GRAPH (true), AUTHORS_ETM (true: the ETM fit with the authors' loss sum, inference
# clamp 0.5 and step schedule, as benchmarks/results/fidelity-hopper-medium-cpu.md), DEADLINE (seconds from the start by which the runs are
# stopped, so that their files still come back: 440).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/empo-runs-out}"
WORK="${WORK:-/tmp/empo-runs}"
COEFS="${COEFS:-2.0 5.0}"; SEED="${SEED:-0}"; PRESET="${PRESET:-quick}"; SIZE="${SIZE:-1000000}"
DEVICE="${DEVICE:-auto}"; RUNTIME_GRAPH="${RUNTIME_GRAPH:-true}"; DEADLINE="${DEADLINE:-440}"
mkdir -p "$OUT" "$WORK"
. benchmarks/gpu/install.sh || exit 3
export EMPO_HOME="$WORK/home" MINARI_DATASETS_PATH="$WORK/minari"
started=$(date +%s)
python3 -m empo.cli.data build hopper-medium --size "$SIZE" --no-progress 2>&1 | grep -v Warning | tail -n 2
echo "dataset: $(( $(date +%s) - started )) s"
ETM_SETS=()
if [ "${AUTHORS_ETM:-true}" = true ]; then  # the authors' ETM settings, as the CPU fidelity runs used
    ETM_SETS=(--set etm.loss_reduction=sum --set etm.rollout_langevin.grad_clip=0.5 --set etm.eval_langevin.grad_clip=0.5
              --set etm.rollout_langevin.step_size_reaches_end=true --set etm.eval_langevin.step_size_reaches_end=true)
fi
python3 -m empo.cli.model train --task hopper-medium --model etm --preset "$PRESET" --seed "$SEED" --device "$DEVICE" "${ETM_SETS[@]}" \
    --no-progress --out "$WORK/etm" 2>&1 | tail -n 2
echo "etm fit: $(( $(date +%s) - started )) s"
LIMIT=$(( DEADLINE - ($(date +%s) - started) ))
echo "runs get $LIMIT s"
pids=()
for coef in $COEFS; do
    timeout "$LIMIT" python3 -m empo.cli.train --task hopper-medium --preset "$PRESET" --seed "$SEED" --device "$DEVICE" \
        --threads 1 --no-progress --model-dir "$WORK/etm" --run-dir "$WORK/coef$coef" \
        --set empo.penalty_at=update --set empo.penalty_decay=true --set empo.alpha_max=1.0 \
        --set empo.penalty_coef="$coef" --set runtime.cuda_graph="$RUNTIME_GRAPH" > "$WORK/coef$coef.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
echo "runs: $(( $(date +%s) - started )) s"
for coef in $COEFS; do
    tail -n 1 "$WORK/coef$coef.log"
    cp "$WORK/coef$coef/progress.csv" "$OUT/progress-coef$coef.csv" 2>/dev/null
    cp "$WORK/coef$coef/summary.json" "$OUT/summary-coef$coef.json" 2>/dev/null
done
cp "$WORK/etm/train_log.csv" "$OUT/etm-train-log.csv" 2>/dev/null
