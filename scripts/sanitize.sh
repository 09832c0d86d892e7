#!/usr/bin/env bash
# Builds the CPU kernels (and the emulated CUDA kernels) with AddressSanitizer and
# UndefinedBehaviorSanitizer in a scratch copy of the tree, then runs the op tests against
# that build. Any sanitizer report fails the run. Usage (after scripts/install.sh):
#   bash scripts/sanitize.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export YOLACT_FAST_GOLDEN=${YOLACT_FAST_GOLDEN:-$(cd .. && pwd)/shared/golden}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git ls-files -z csrc yolact_fast tests setup.py pyproject.toml README.md LICENSE | xargs -0 cp --parents -t "$work"
cd "$work"
FORCE_CUDA=0 SANITIZE=1 MAX_JOBS=${MAX_JOBS:-2} python setup.py -q build_ext --inplace >build.log 2>&1 \
  || { tail -n 60 build.log; exit 1; }
asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
# Python and torch allocate for the life of the process: leak checks would only report those.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
LD_PRELOAD="$asan:$ubsan" python -m pytest -q -p no:cacheprovider \
  tests/test_ops_reference.py tests/test_ops_golden.py tests/test_emulated_cuda.py tests/test_ops_errors.py \
  tests/test_fuzz.py "$@" 2>&1 | tee sanitize.log
if grep -E "ERROR: AddressSanitizer|runtime error:" sanitize.log >/dev/null; then
  echo "sanitizer reports found"; exit 1
fi
echo "sanitizers: no reports"
