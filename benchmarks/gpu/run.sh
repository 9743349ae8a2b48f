#!/usr/bin/env bash
# The device run: install what the lent GPU machine lacks from carried wheels, then every GPU figure.
# On the device tool (its machines run Python 3.12 with torch, h5py, tensorboard, tqdm, PyYAML,
# pandas and matplotlib, and reach no network), from the repository root, carrying .whl:
#   bash benchmarks/gpu/run.sh            # writes figures.json, report.md and log.txt into $OUT
# Prepare .whl on a machine with network access (cp312 wheels of the versions the project pins):
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d .whl \
#     gymnasium==1.4.0 farama-notifications==0.0.6 mujoco==3.17.0 stable-baselines3==2.9.2 glfw pyopengl 'websockets>=13'
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/empo-gpu-bench}"
mkdir -p "$OUT"
SITE=/tmp/empo-site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 3
# the project itself: its package with configs/ installed as empo.configs (what pyproject.toml maps)
if ! python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$SITE" . ; then
    echo "pip could not build the project here; copying the package as pyproject.toml lays it out"
    rm -rf "$SITE/empo" && cp -r empo "$SITE/empo" && cp -r configs "$SITE/empo/configs"
fi
export PYTHONPATH="$SITE" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,utilization.gpu --format=csv | tee "$OUT/nvidia-smi.txt"
timeout "${BENCH_TIMEOUT:-480}" python3 benchmarks/gpu/bench_gpu.py --profile gpu --out-dir "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
