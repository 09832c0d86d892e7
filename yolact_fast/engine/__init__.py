"""The inference engine behind :func:`yolact_fast.segment`: a model's network built once per
(device, precision, runtime) and reused while the model's weights are unchanged.

- ``precision``: "fp32" (the default; official parity), "bf16" (CPUs with native bfloat16,
  GPUs of compute capability 8.0+), "fp16" (CUDA), "auto" (fp16 on CUDA, bf16 on CPUs with
  native bf16, else fp32). The network runs in that precision; its outputs go to the
  post-network kernels as they are.
- ``runtime``: "torch" (the default), "onnxruntime" or "openvino" (the network exported by
  :func:`yolact_fast.export.network_onnx`, run by that runtime on the CPU; installed with the
  extra of the same name), or "auto" (every installed runtime that runs the precision,
  timed, the fastest kept). The post-network path is :mod:`yolact_fast.ops` in every case.
- The torch runtime builds its variants (oneDNN-packed convolutions, plain channels_last, on
  CUDA also NCHW) and keeps the fastest measured on one image; on CUDA it replays the chosen
  network from a CUDA graph per input shape.

Weight changes are seen without reading any value (:mod:`yolact_fast.engine.cache`); call
:func:`refresh` after edits through ``.data`` or numpy views.
"""

from __future__ import annotations

from .build import Engine, EngineInfo, clear_choices
from .cache import MAX_ENGINES, cached_engines, get_engine, refresh
from .identity import check_unchanged, weights_identity
from .options import PRECISIONS, RUNTIMES

__all__ = [
    "Engine",
    "EngineInfo",
    "MAX_ENGINES",
    "PRECISIONS",
    "RUNTIMES",
    "cached_engines",
    "check_unchanged",
    "clear_choices",
    "engine_info",
    "get_engine",
    "refresh",
    "weights_identity",
]


def engine_info(model=None, precision: str = "fp32", runtime: str = "torch") -> EngineInfo:
    """What :func:`yolact_fast.segment` runs for ``model`` (as ``segment`` takes it: a
    :class:`~yolact_fast.Yolact`, a checkpoint path, "demo" or None) with these options;
    builds the engine if it is not built yet."""
    from ..model.resolve import resolve_model

    return get_engine(resolve_model(model), precision, runtime).info
