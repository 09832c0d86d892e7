"""Exported ONNX graphs run by onnxruntime behind the :func:`yolact_fast.segment` interface."""

from __future__ import annotations

import json
import os
from typing import List, Optional

import torch

from ..instances import Instances
from ..io import as_image_list
from ._optional import require
from .onnx_graph import SEGMENT_OUTPUTS, onnx_model


class OnnxSegmenter:
    """An exported ``postprocess=True`` ONNX file run by onnxruntime (CPU by default).

    ``segmenter(image)`` -> :class:`Instances`, as :func:`yolact_fast.segment`; images are uint8
    (tensors [3,H,W], numpy HxWx3, PIL images or file paths; a list gives a list).
    ``threads``: onnxruntime intra-op threads (default: torch's thread count).
    """

    def __init__(self, path, threads: Optional[int] = None, providers: Optional[List[str]] = None):
        """``path``: an ONNX file, or its serialized bytes."""
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        source = path if isinstance(path, bytes) else os.fspath(path)
        self.session = ort.InferenceSession(source, options, providers=providers or ["CPUExecutionProvider"])
        metadata = self.session.get_modelmeta().custom_metadata_map
        if json.loads(metadata.get("yolact_fast.postprocess", "false")) is not True:
            raise ValueError("the ONNX model is not a postprocess=True yolact_fast export")
        self.class_names = tuple(json.loads(metadata["yolact_fast.class_names"]))
        self.input_shape = self.session.get_inputs()[0].shape

    def __call__(self, images):
        image_list, is_batch = as_image_list(images)
        results = [self._run(image) for image in image_list]
        return results if is_batch else results[0]

    def _run(self, image: torch.Tensor) -> Instances:
        if image.dtype != torch.uint8:
            raise TypeError(f"image must be uint8 for the ONNX graph, got {image.dtype}")
        array = image.cpu().contiguous().numpy()
        expected = self.input_shape
        if len(expected) == 4:  # exported with batched_input=True
            array = array[None]
        fixed = [(i, d) for i, d in enumerate(expected) if isinstance(d, int)]
        if any(array.shape[i] != d for i, d in fixed):
            raise ValueError(f"image must be {expected} (the exported image_size), got {list(array.shape)}")
        boxes, scores, labels, masks = self.session.run(list(SEGMENT_OUTPUTS), {"image": array})
        return Instances(
            torch.from_numpy(boxes),
            torch.from_numpy(scores),
            torch.from_numpy(labels),
            torch.from_numpy(masks),
            self.class_names,
        )


def onnxruntime_segmenter(model, threads: Optional[int] = None, **options) -> OnnxSegmenter:
    """``yf.segment`` through onnxruntime: ``model`` exported in memory (dynamic image size),
    then run by :class:`OnnxSegmenter`; ``options`` as :func:`yolact_fast.segment`.

    Same detections as ``segment`` (tests/test_export.py); on a 2-core CPU it ran yolact_base at
    480x640 about 1.1x as fast as ``segment`` after a one-off export and session set-up of tens
    of seconds (docs/deployment.md, ``benchmarks/bench_export.py``).
    """
    serialized = onnx_model(model, **options).SerializeToString()
    return OnnxSegmenter(serialized, threads=threads)
