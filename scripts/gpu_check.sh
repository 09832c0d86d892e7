#!/usr/bin/env bash
# The prepared check for a machine with an NVIDIA GPU, from a bare checkout, within DEADLINE
# seconds (default 420): builds the extension for the visible GPU against the torch already
# installed (nothing is installed), then runs scripts/gpu_check.py's steps, which rewrite
# $OUT/gpu_check.json after each one. --dry-run runs the same steps on the CPU at tiny sizes.
#   OUT=/tmp/out bash scripts/gpu_check.sh [--dry-run]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/yf_gpu_check}
DEADLINE=${DEADLINE:-420}
VENV_BIN=${VENV_BIN:-/opt/torch/.venv/bin}  # a Python with torch, where the machine has one there
[ -x "$VENV_BIN/python" ] && [ -z "${VIRTUAL_ENV:-}" ] && export PATH=$VENV_BIN:$PATH
export PATH=$PATH:/usr/local/cuda/bin PYTHONUNBUFFERED=1
mkdir -p "$OUT"
PY=$(command -v python || command -v python3)
timeout -k 10 "$DEADLINE" "$PY" scripts/gpu_check.py --out "$OUT" --deadline $((DEADLINE - 15)) "$@"
