#!/usr/bin/env bash
# Re-trains the embedded demo model (yolact_fast/weights/demo.pt) from nothing and evaluates it
# on held-out synthetic images (seed 1000; training uses seed 0). About 45-60 minutes on 2 CPU
# cores. Usage: bash scripts/train_demo.sh [OUT_DIR]   (default runs/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/demo}
PY=${PYTHON:-.venv/bin/python}

"$PY" -m yolact_fast.train.recipes demo --out "$OUT" --threads 2
cp "$OUT/demo.pt" yolact_fast/weights/demo.pt
"$PY" -m yolact_fast eval --weights demo --data synthetic:500:1000 --out "$OUT/eval" --threads 2
