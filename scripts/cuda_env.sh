# Sourced (bash) after the venv is active: when nvcc is on PATH, exports CUDA_HOME (the
# toolkit nvcc really runs: the nvcc on PATH may be a wrapper script), CPATH with the CUDA
# headers of torch's nvidia wheels, FORCE_CUDA=1 and a default TORCH_CUDA_ARCH_LIST.
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
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0"}
  unset _yf_probe _yf_toolkit _yf_site
fi
