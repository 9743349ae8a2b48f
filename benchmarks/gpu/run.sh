#!/usr/bin/env bash
# The device run: every GPU figure in one call (about 3 minutes on an H100), from the repository
# root on a lent GPU machine, carrying .whl (see install.sh):
#   bash benchmarks/gpu/run.sh            # writes figures.json, report.md and log.txt into $OUT
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/empo-gpu-bench}"
mkdir -p "$OUT"
. benchmarks/gpu/install.sh || exit 3
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,utilization.gpu --format=csv | tee "$OUT/nvidia-smi.txt"
timeout "${BENCH_TIMEOUT:-480}" python3 benchmarks/gpu/bench_gpu.py --profile gpu --out-dir "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
