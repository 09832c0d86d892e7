"""The torch that imports the extension must be the one it was compiled against.

A C++ extension links against one torch release's libraries and C++ ABI; under another
release it fails to load with an undefined symbol, or loads and misbehaves. setup.py records
the torch it compiled against in ``yolact_fast/_build_info.py`` (next to the extension);
``import yolact_fast`` compares it with the running torch before loading the extension.
"""

from __future__ import annotations

from typing import Optional

import torch

REBUILD = (
    "rebuild it against the installed torch: `pip install --no-build-isolation --no-deps --force-reinstall "
    "<yolact_fast source or sdist>` (a plain, isolated `pip install` compiles against another torch), "
    "or `bash scripts/install.sh` in a checkout"
)


def release(version: str) -> str:
    """'2.14.1+cu130' -> '2.14.1' (the local label names the variant: +cpu, +cu130)."""
    return version.split("+", 1)[0]


def check_torch(built_torch: str, built_cuda: Optional[str], running_torch: str, running_cuda: Optional[str]) -> None:
    """Raise ImportError unless an extension compiled against torch ``built_torch`` (with CUDA
    kernels for CUDA ``built_cuda``, None without) loads under ``running_torch``: the same
    release, and for CUDA kernels the same CUDA version (a CPU-only build runs on the CPU and
    on any CUDA variant of its release)."""
    if release(built_torch) == release(running_torch) and built_cuda in (None, running_cuda):
        return
    built = f"torch {built_torch}" + (f" (CUDA {built_cuda})" if built_cuda else "")
    running = f"torch {running_torch}" + (f" (CUDA {running_cuda})" if running_cuda else " (no CUDA)")
    raise ImportError(f"yolact_fast's extension was built against {built}, but {running} is installed; {REBUILD}")


def check_extension_torch() -> None:
    """check_torch() for the extension next to this file; nothing to check when it was built
    without a record (an extension built by an older setup.py)."""
    try:
        from . import _build_info
    except ImportError:
        return
    check_torch(_build_info.TORCH_VERSION, _build_info.CUDA_VERSION, torch.__version__, torch.version.cuda)
