"""The segment path as a ``torch.nn.Module`` over the ``yolact_fast`` ops (static padded
outputs plus a count), captured by ``torch.export`` through the ops' fake kernels and compiled
by AOTInductor."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Sequence, Tuple

import torch

from .. import ops as _ops
from ..files import atomic_output
from ..instances import Instances
from ..model import Yolact
from ..model.fuse import inference_copy
from ..model.resolve import resolve_model
from ..ops._args import image_size_arg
from ..ops.boxes import boxes_to_pixels
from ..preprocess import preprocess
from ..segment import SegmentOptions
from ._optional import refuse_rescoring


class SegmentProgram(torch.nn.Module):
    """``yf.segment`` for one image as a module with static output shapes, over the
    ``yolact_fast`` ops (whose fake kernels let ``torch.export`` trace it).

    forward(image uint8 [3,H,W]) -> (boxes [D,4] pixels, scores [D], labels [D] int64,
    masks bool [D,H,W], count [] int64); rows >= count are padding. D = ``max_detections``
    (or fewer when fewer boxes can exist).
    """

    def __init__(
        self,
        model: Yolact,
        nms: str = "fast",
        score_threshold: float = 0.05,
        iou_threshold: float = 0.5,
        top_k: int = 200,
        max_detections: int = 100,
    ):
        super().__init__()
        options = SegmentOptions(score_threshold, iou_threshold, top_k, max_detections, nms)
        self.config = model.config
        self.network = inference_copy(model, pack_cpu=False)  # channels_last on the CPU only
        size = (model.config.max_size,) * 2
        self.register_buffer("priors", _ops.make_priors(model.config, size, model.device))
        self.options = (
            options.iou_threshold,
            options.top_k,
            options.score_threshold,
            options.max_detections,
            options.nms,
        )

    def forward(self, image: torch.Tensor):
        yolact_ops = torch.ops.yolact_fast
        batch = preprocess([image], self.config, image.device)
        out = self.network(batch.contiguous(memory_format=self.network.input_memory_format))
        det_boxes, det_coeffs, labels, det_scores, count = yolact_ops.detect(
            out.loc[0], out.conf_logits[0], out.mask_coeffs[0], self.priors, *self.config.variances, *self.options
        )
        size = image.shape[-2:]
        masks = yolact_ops.paste_masks(out.proto[0], det_coeffs, det_boxes, [size[0], size[1]], 0.5, 1.0)
        pixel_boxes = boxes_to_pixels(det_boxes, (size[0], size[1])).long().float()
        return pixel_boxes, det_scores, labels, masks, count


def segment_program(model, **options) -> SegmentProgram:
    """A :class:`SegmentProgram` of ``model`` (Yolact, checkpoint path or "demo"); ``options``
    as :func:`yolact_fast.segment` (nms, score_threshold, iou_threshold, top_k, max_detections)."""
    model = resolve_model(model)
    refuse_rescoring(model)
    return SegmentProgram(model, **options).eval()


def torch_export(
    model, image_size: Tuple[int, int], postprocess: bool = True, **options
) -> torch.export.ExportedProgram:
    """``torch.export`` of the whole segment path (:class:`SegmentProgram`, input uint8
    [3,H,W] with (H, W) = ``image_size``) or, with ``postprocess=False``, of the network alone
    (the fused copy; input float [1,3,S,S]).

    The image size is static: ``paste_masks`` takes its output size as ``int[2]``.
    """
    model = resolve_model(model)
    height, width = image_size_arg(image_size)
    if postprocess:
        module = segment_program(model, **options)
        example = torch.zeros(3, height, width, dtype=torch.uint8, device=model.device)
    else:
        if options:
            raise ValueError(f"options {sorted(options)} apply to postprocess=True programs")
        module = inference_copy(model, pack_cpu=False)  # channels_last on the CPU only
        size = model.config.max_size
        example = torch.zeros(1, 3, size, size, device=model.device)
    with torch.no_grad():
        return torch.export.export(module, (example,))


def aoti_package(model, path, image_size: Tuple[int, int], **options) -> str:
    """Compile the whole segment path at ``image_size`` with AOTInductor into a ``.pt2``
    package at ``path``; ``options`` as :func:`yolact_fast.segment`.

    Load it with :func:`load_aoti` (Python) or ``torch::inductor::AOTIModelPackageLoader``
    (C++, with the yolact_fast ops library loaded: see the README). Returns ``path``.
    """
    from torch._inductor import aoti_compile_and_package

    program = torch_export(model, image_size, postprocess=True, **options)
    with tempfile.TemporaryDirectory() as folder, torch.no_grad():  # compiled aside, then written atomically
        package = aoti_compile_and_package(program, package_path=os.path.join(folder, "package.pt2"))
        with open(package, "rb") as compiled, atomic_output(os.fspath(path)) as file:
            shutil.copyfileobj(compiled, file)
    return os.fspath(path)


class _AotiSegmenter:
    """A loaded AOTInductor package: ``segmenter(image uint8 [3,H,W])`` -> Instances."""

    def __init__(self, path, class_names: Sequence[str]):
        from torch._inductor import aoti_load_package

        self.runner = aoti_load_package(os.fspath(path))
        self.class_names = tuple(class_names)

    def __call__(self, image: torch.Tensor) -> Instances:
        with torch.inference_mode():
            boxes, scores, labels, masks, count = self.runner(image)
        n = int(count)
        return Instances(boxes[:n], scores[:n], labels[:n], masks[:n], self.class_names)


def load_aoti(path, class_names: Sequence[str]) -> _AotiSegmenter:
    """Load an :func:`aoti_package` file; calls give :class:`Instances`."""
    return _AotiSegmenter(path, class_names)
