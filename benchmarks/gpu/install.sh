#!/usr/bin/env bash
# Source this on a lent GPU machine (Python 3.12 with torch, h5py, tensorboard, tqdm, PyYAML,
# pandas, matplotlib, packaging and imageio, and no network): installs the carried wheels in .whl
# and the project into /tmp/empo-site and puts it on PYTHONPATH. Fetch the wheels where there is
# network access (cp312 wheels of the versions the project pins):
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d .whl \
#     gymnasium==1.4.0 farama-notifications==0.0.6 mujoco==3.17.0 minari==0.5.4 stable-baselines3==2.9.2 glfw pyopengl 'websockets>=13'
SITE=/tmp/empo-site
if ! python3 -c "import gymnasium, mujoco, minari, stable_baselines3" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl 2>>/tmp/empo-pip.log || return 3
fi
# the project itself: its package with configs/ installed as empo.configs (what pyproject.toml maps)
if ! python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade --target "$SITE" . 2>>/tmp/empo-pip.log; then
    echo "pip could not build the project here; copying the package as pyproject.toml lays it out"
    rm -rf "$SITE/empo" && mkdir -p "$SITE" && cp -r empo "$SITE/empo" && cp -r configs "$SITE/empo/configs"
fi
# PYTHONSAFEPATH: `python3 -m empo...` from the repository root must import the installed package
# (which holds empo.configs), not the source folder empo/ in the current directory
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1
