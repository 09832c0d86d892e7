"""The one home of the CUDA build facts, read by setup.py, scripts/cuda_env.sh,
scripts/cmake_build.sh and tools/cuda_report.py:

    python scripts/cuda_toolkit.py archs   # default TORCH_CUDA_ARCH_LIST (no GPU visible)
    python scripts/cuda_toolkit.py home    # root of the toolkit the nvcc on PATH runs

The default architectures cover Turing to Hopper, with PTX of the newest so that later GPUs
(Blackwell) JIT the kernels. The nvcc on PATH may be a wrapper script whose directory has no
toolkit beside it, so the toolkit root is asked of nvcc itself (`nvcc --dryrun` prints it).
Standard library only: setup.py loads this file before torch's build helpers run.
"""

import os
import re
import subprocess
import sys
import tempfile

DEFAULT_CUDA_ARCHS = "7.5;8.0;8.6;8.9;9.0+PTX"
# nvcc flags of the kernels besides optimisation and defines: no fused multiply-add (the CPU
# kernels and the reference round each product), constexpr host functions in device code.
NVCC_FLAGS = ("--fmad=false", "--expt-relaxed-constexpr")


def toolkit_of_nvcc():
    """Root of the CUDA toolkit that the nvcc on PATH runs, or None without a usable nvcc."""
    with tempfile.TemporaryDirectory() as tmp:
        open(os.path.join(tmp, "probe.cu"), "w").close()
        try:
            dry = subprocess.run(
                ["nvcc", "--dryrun", "-c", "probe.cu"], cwd=tmp, capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
    match = re.search(r"^#\$ _HERE_=(.*)/bin$", dry.stdout + dry.stderr, re.MULTILINE)
    return match.group(1) if match else None


def main(argv):
    if argv == ["archs"]:
        print(DEFAULT_CUDA_ARCHS)
    elif argv == ["home"]:
        home = toolkit_of_nvcc()
        if home is None:
            return 1
        print(home)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
