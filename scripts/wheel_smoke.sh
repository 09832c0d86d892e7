#!/usr/bin/env bash
# Builds a wheel the way a user does (pip, no build isolation: against the torch of the active
# venv) from the committed tree (git archive HEAD), checks what it ships, installs it into a
# fresh venv that reuses the active venv's torch and other dependencies (a .pth line: the
# wheel's own package comes first), and segments the demo image outside the checkout, through
# the API and through the yolact-fast command.
# The build is CPU-only unless FORCE_CUDA=1 (no GPU is made visible to it otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
git archive HEAD | tar -x -C "$work/src"
if [ "${FORCE_CUDA:-0}" = "1" ]; then gpus=${CUDA_VISIBLE_DEVICES-}; else gpus=""; fi
(cd "$work/src" && CUDA_VISIBLE_DEVICES=$gpus MAX_JOBS=${MAX_JOBS:-2} \
  pip wheel -q --no-build-isolation --no-deps -w "$work/dist" . >"$work/build.log" 2>&1) \
  || { tail -n 60 "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/yolact_fast-*.whl)
echo "built $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"

python - "$wheel" <<'PY'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
extensions = [n for n in names if n.startswith("yolact_fast/_C") and n.endswith(".so")]
assert len(extensions) == 1, extensions
for needed in ("yolact_fast/weights/demo.pt", "yolact_fast/_build_info.py", "yolact_fast/cli.py"):
    assert needed in names, f"the wheel lacks {needed}"
top = sorted({n.split("/")[0] for n in names})
assert all(t == "yolact_fast" or t.startswith("yolact_fast-") for t in top), f"not the package alone: {top}"
PY

python -m venv "$work/venv"
site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
  | xargs -I{} sh -c "echo '$site' > {}/build_env.pth"
"$work/venv/bin/python" -m pip install -q --no-deps --force-reinstall "$wheel" >"$work/install.log" 2>&1 \
  || { cat "$work/install.log"; exit 1; }

cd "$work"
"$work/venv/bin/python" - <<'PY'
import sys

import torch

import yolact_fast as yf
from yolact_fast import _build_info
from yolact_fast.data import synthetic_shapes

assert yf.__file__.startswith(sys.prefix), f"imported {yf.__file__}, not the wheel's package"
assert _build_info.TORCH_VERSION == torch.__version__
model = yf.load("demo")
image, target = synthetic_shapes(1, 2029, (model.config.max_size, model.config.max_size))[0]
instances = yf.segment(image, model=model)
shown = instances[instances.scores >= 0.5]
assert len(shown) > 0 and set(shown.labels.tolist()) <= set(target["labels"].tolist()), (shown, target)
print(f"wheel smoke test: {len(shown)} instance(s) with score >= 0.5 "
      f"(torch {torch.__version__}, extension built with CUDA {_build_info.CUDA_VERSION})")
PY
"$work/venv/bin/yolact-fast" demo --out "$work/demo"
test -s "$work/demo/demo.png"
