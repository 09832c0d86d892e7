#!/usr/bin/env bash
# Configure, build and ctest the CMake (libtorch) build of the kernels; CPU only unless
# WITH_CUDA=ON (then CUDA_HOME must name the toolkit: source scripts/cuda_env.sh first).
# Run inside the project's venv (torch provides libtorch and its CMake config).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(python -c "import torch; print(torch.utils.cmake_prefix_path)")
# A CUDA build of torch makes its CMake config look for the toolkit (and, without an
# arch list, for GPUs) even for CPU targets: the project's default list when none is set.
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$(python scripts/cuda_toolkit.py archs)}
cuda_args=()
if [ -n "${CUDA_HOME:-}" ]; then
  cuda_args=(-DCUDA_TOOLKIT_ROOT_DIR="$CUDA_HOME" -DCUDAToolkit_ROOT="$CUDA_HOME"
             -DCMAKE_CUDA_COMPILER="$CUDA_HOME/bin/nvcc")
  # nvrtc may come with torch's nvidia wheels rather than with the toolkit.
  nvrtc=$(python - <<'PY'
import glob, os, sysconfig
site = sysconfig.get_paths()["purelib"]
hits = sorted(glob.glob(os.path.join(site, "nvidia", "cu*", "lib", "libnvrtc.so*")))
print(hits[0] if hits else "")
PY
)
  if [ -n "$nvrtc" ] && [ ! -e "$CUDA_HOME/lib64/libnvrtc.so" ]; then
    cuda_args+=(-DCUDA_nvrtc_LIBRARY="$nvrtc")
  fi
fi
mkdir -p build
cmake -S . -B build/cmake -DCMAKE_PREFIX_PATH="$prefix" "${cuda_args[@]}" -DWITH_CUDA="${WITH_CUDA:-OFF}" \
  -DCMAKE_BUILD_TYPE=Release >build/cmake.log 2>&1 \
  || { cat build/cmake.log; exit 1; }
cmake --build build/cmake -j "${MAX_JOBS:-2}" 2>&1 | tail -n 2
ctest --test-dir build/cmake --output-on-failure
