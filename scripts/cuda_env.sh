# Sourced (bash) after the venv is active: when nvcc is on PATH, exports CUDA_HOME (the
# toolkit nvcc really runs: the nvcc on PATH may be a wrapper script), CPATH with the CUDA
# headers of torch's nvidia wheels and FORCE_CUDA=1. TORCH_CUDA_ARCH_LIST (unless already
# set): left unset when torch sees a GPU, so the build targets that GPU; otherwise the
# default list (with +PTX for newer GPUs). Both the nvcc probe and that list have their one
# home in scripts/cuda_toolkit.py. FORCE_CUDA=0 beforehand keeps the build CPU-only.
if command -v nvcc >/dev/null 2>&1 && [ "${FORCE_CUDA:-1}" != "0" ]; then
  _yf_toolkit_py="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/cuda_toolkit.py"
  _yf_site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  export CUDA_HOME=${CUDA_HOME:-$(python "$_yf_toolkit_py" home || echo /usr/local/cuda)}
  export CPATH="$_yf_site/nvidia/cu13/include${CPATH:+:$CPATH}"
  export FORCE_CUDA=1
  if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ] && \
     [ "$(python -c 'import torch; print(torch.cuda.is_available())' 2>/dev/null)" != "True" ]; then
    export TORCH_CUDA_ARCH_LIST=$(python "$_yf_toolkit_py" archs)
  fi
  unset _yf_toolkit_py _yf_site
fi
