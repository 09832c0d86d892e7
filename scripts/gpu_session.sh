#!/usr/bin/env bash
# The long GPU checks (scripts/gpu_check.sh is the quick one): build the extension for the
# GPU present (unless a build for this Python is already in yolact_fast/), then run the
# stages named on the command line, each under its own time limit, appending its log to
# $OUT/session.log:
#   info      GPU, driver, torch, nvcc
#   build     FORCE_CUDA build for the GPU present
#   exercise  tests/gpu_exercise.py: every CUDA op against the CPU kernel
#   tests     the pytest cases that run on the GPU (the "cuda" backend and the GPU-only tests)
#   timings   benchmarks/gpu_timings.py: graph-replayed and eager device times, per-kernel table
#   sanitize  compute-sanitizer memcheck, racecheck, synccheck, initcheck over gpu_exercise --quick
#   bench     pytest benchmarks/bench_cuda.py (pytest-benchmark, JSON to $OUT)
#   ncu       Nsight Compute sections of the six post-network kernels (second call of two)
#   stalls    Nsight Compute PC sampling of the same kernels: warp stall samples per SASS
#             instruction (CSV), to attribute barrier waits to the code before them
#   suite     the whole test suite (the README's command) with the GPU present
# Usage: OUT=/tmp/out bash scripts/gpu_session.sh info build exercise tests timings
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/yf_gpu_out}
DEADLINE=${DEADLINE:-540}  # seconds: no stage runs past this
mkdir -p "$OUT"
VENV_BIN=${VENV_BIN:-/opt/torch/.venv/bin}  # a Python with torch, where the machine has one there
[ -x "$VENV_BIN/python" ] && export PATH=$VENV_BIN:$PATH
PY=$(command -v python || command -v python3)
export PATH=$PATH:/usr/local/cuda/bin PYTHONUNBUFFERED=1 YOLACT_FAST_EXPECT_CUDA=1
export YOLACT_FAST_GOLDEN=$PWD/tests/data/golden PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

stage() {  # stage NAME SECONDS COMMAND...: runs COMMAND under min(SECONDS, time to DEADLINE)
  local name=$1 limit=$2; shift 2
  local left=$((DEADLINE - SECONDS))
  if [ "$left" -lt 15 ]; then echo "=== $name skipped: deadline"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "=== $name (limit ${limit}s) $(date +%T)"
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" >/tmp/yf_stage.log 2>&1
  local rc=$?
  echo "=== $name rc=$rc in $((SECONDS - t0))s"
  { echo "=== $name rc=$rc in $((SECONDS - t0))s"; cat /tmp/yf_stage.log; } >>"$OUT/session.log"
  tail -n "${TAIL:-25}" /tmp/yf_stage.log
}

built() {  # both extension modules, _C and _emulation, for this Python
  local v
  v=$(timeout 30 "$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
  ls yolact_fast/_C.cpython-"$v"-*.so yolact_fast/_emulation.cpython-"$v"-*.so >/dev/null 2>&1
}

if [ $# -eq 0 ]; then
  echo "usage: OUT=DIR bash scripts/gpu_session.sh STAGE... (info build exercise tests timings sanitize bench ncu stalls suite)"
  exit 2
fi

for name in "$@"; do
  case $name in
    info) stage info 120 bash -c 'echo "python: $(command -v python)"; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv; nvcc --version | tail -2; nproc; time python -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"' ;;
    build)
      if built; then echo "=== build: using the carried" yolact_fast/_C*.so yolact_fast/_emulation*.so; continue; fi
      # shellcheck disable=SC1091
      stage build 480 bash -c '. scripts/cuda_env.sh && FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=$(nproc) python setup.py build_ext --inplace'
      ;;
    exercise) stage exercise 240 python tests/gpu_exercise.py ;;
    tests) stage tests 300 python -m pytest -q -p no:cacheprovider \
             tests/test_ops_reference.py tests/test_build.py tests/test_ops_errors.py tests/test_plus.py \
             -k "cuda and not emulated_cuda" ;;
    timings) stage timings 200 python benchmarks/gpu_timings.py --json "$OUT/gpu_timings.json" ;;
    sanitize)
      for tool in memcheck racecheck synccheck initcheck; do
        stage "sanitize_$tool" 150 compute-sanitizer --tool "$tool" --error-exitcode 3 \
          python tests/gpu_exercise.py --quick
      done ;;
    bench) stage bench 300 python -m pytest -q -p no:cacheprovider benchmarks/bench_cuda.py \
             --benchmark-columns=median,min,rounds --benchmark-json="$OUT/bench_cuda.json" ;;
    ncu) stage ncu 240 ncu --clock-control none --launch-skip 6 --launch-count 6 \
           --kernel-name regex:"class_nms|paste_masks|detect_scores" \
           --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
           --section MemoryWorkloadAnalysis --section SchedulerStats --section ComputeWorkloadAnalysis \
           python benchmarks/gpu_timings.py --profile-once ;;
    stalls) stage stalls 240 bash -c 'ncu --clock-control none --launch-skip 6 --launch-count 6 \
              --kernel-name regex:"class_nms|paste_masks|detect_scores" \
              --section SourceCounters --section WarpStateStats --export /tmp/yf_stalls --force-overwrite \
              python benchmarks/gpu_timings.py --profile-once &&
            ncu --import /tmp/yf_stalls.ncu-rep --page source --print-source sass --csv' ;;
    suite) stage suite 540 python -m pytest -q -p no:cacheprovider -x tests ;;
    *) echo "unknown stage $name"; exit 2 ;;
  esac
done
