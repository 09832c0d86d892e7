"""yolact_fast: YOLACT instance segmentation with fused CPU and CUDA kernels."""

from . import configs, ops, reference  # noqa: F401

__version__ = "0.1.0"
