"""Deployment: ONNX graphs (run by onnxruntime), ``torch.export`` programs and AOTInductor packages.

:func:`onnx` writes the whole of :func:`yolact_fast.segment` as standard ONNX operators, or the
network alone (:mod:`.onnx_graph`); :class:`OnnxSegmenter` runs such a file with onnxruntime
(:mod:`.onnxruntime_runner`). :func:`segment_program` is the same path as a
``torch.nn.Module`` over the ``yolact_fast`` ops, which :func:`torch_export` captures and
:func:`aoti_package` compiles with AOTInductor (:mod:`.program`).

``onnx`` and ``onnxruntime`` are optional: ``pip install 'yolact_fast[export]'``.
"""

from .onnx_graph import (
    DEFAULT_OPSET,
    NETWORK_OUTPUTS,
    RAW_OUTPUTS,
    SEGMENT_OUTPUTS,
    SUPPORTED_OPSETS,
    network_onnx,
    onnx,
    onnx_model,
    postprocess_graph,
)
from .onnxruntime_runner import OnnxSegmenter, onnxruntime_segmenter
from .program import SegmentProgram, aoti_package, load_aoti, segment_program, torch_export

__all__ = [
    "onnx",
    "onnx_model",
    "network_onnx",
    "postprocess_graph",
    "OnnxSegmenter",
    "onnxruntime_segmenter",
    "SegmentProgram",
    "segment_program",
    "torch_export",
    "aoti_package",
    "load_aoti",
    "DEFAULT_OPSET",
    "SUPPORTED_OPSETS",
    "SEGMENT_OUTPUTS",
    "NETWORK_OUTPUTS",
    "RAW_OUTPUTS",
]
