#!/usr/bin/env bash
# Sets up a fresh machine: a venv in .venv, the pinned requirements, and the extension
# (CUDA kernels included when nvcc is found; nvcc may be a wrapper script, so CUDA_HOME
# is taken from the toolkit it really runs). Safe to run again: the extension is built in
# place with ninja, whose objects stay in build/, so a second run recompiles only the
# sources that changed (and nothing when none did).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q -r requirements.txt

. scripts/cuda_env.sh
[ "${FORCE_CUDA:-0}" = "1" ] && echo "building the CUDA kernels: CUDA_HOME=$CUDA_HOME TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-(the visible GPU)}"
mkdir -p build
# Other build options than last time (CUDA on/off, architectures, debug): rebuild all.
options="FORCE_CUDA=${FORCE_CUDA:-0} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-} DEBUG=${DEBUG:-0} SANITIZE=${SANITIZE:-0}"
force=()
[ "$(cat build/options.stamp 2>/dev/null)" = "$options" ] || force=(--force)
if ! MAX_JOBS=${MAX_JOBS:-2} python setup.py -q build_ext --inplace "${force[@]}" >build/install.log 2>&1; then
  tail -n 80 build/install.log
  exit 1
fi
echo "$options" >build/options.stamp
# The package itself, editable, over the extension just built (pip builds no extension).
if ! YOLACT_FAST_SKIP_EXT=1 pip install -q --no-build-isolation --no-deps -e . >>build/install.log 2>&1; then
  tail -n 40 build/install.log
  exit 1
fi
echo "yolact_fast installed (extensions: $(echo yolact_fast/_C*.so yolact_fast/_emulation*.so))"
