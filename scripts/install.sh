#!/usr/bin/env bash
# Sets up a fresh machine: a venv in .venv, the pinned requirements, and the extension
# (CUDA kernels included when nvcc is found; nvcc may be a wrapper script, so CUDA_HOME
# is taken from the toolkit it really runs). Safe to run again: it only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q -r requirements.txt

. scripts/cuda_env.sh
[ "${FORCE_CUDA:-0}" = "1" ] && echo "building the CUDA kernels: CUDA_HOME=$CUDA_HOME TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-(the visible GPU)}"
mkdir -p build
if ! MAX_JOBS=${MAX_JOBS:-2} pip install --no-build-isolation -e . >build/install.log 2>&1; then
  tail -n 80 build/install.log
  exit 1
fi
tail -n 1 build/install.log
