# Sourced (bash) after the venv is active: when nvcc is on PATH, exports CUDA_HOME (the
# toolkit nvcc really runs: the nvcc on PATH may be a wrapper script), CPATH with the CUDA
# headers of torch's nvidia wheels and FORCE_CUDA=1. TORCH_CUDA_ARCH_LIST (unless already
# set): left unset when torch sees a GPU, so the build targets that GPU; otherwise the
# default list of setup.py (DEFAULT_CUDA_ARCHS, with +PTX for newer GPUs), its one home.
# FORCE_CUDA=0 beforehand keeps the build CPU-only.
if command -v nvcc >/dev/null 2>&1 && [ "${FORCE_CUDA:-1}" != "0" ]; then
  _yf_probe=$(mktemp -d)
  touch "$_yf_probe/probe.cu"
  _yf_toolkit=$(cd "$_yf_probe" && nvcc --dryrun -c probe.cu 2>&1 | sed -n 's/^#\$ _HERE_=\(.*\)\/bin$/\1/p' | head -n1)
  rm -rf "$_yf_probe"
  _yf_site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  export CUDA_HOME=${CUDA_HOME:-${_yf_toolkit:-/usr/local/cuda}}
  export CPATH="$_yf_site/nvidia/cu13/include${CPATH:+:$CPATH}"
  export FORCE_CUDA=1
  if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ] && \
     [ "$(python -c 'import torch; print(torch.cuda.is_available())' 2>/dev/null)" != "True" ]; then
    _yf_setup="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/setup.py"
    export TORCH_CUDA_ARCH_LIST=$(sed -n 's/^DEFAULT_CUDA_ARCHS = "\(.*\)"$/\1/p' "$_yf_setup")
  fi
  unset _yf_probe _yf_toolkit _yf_site _yf_setup
fi
