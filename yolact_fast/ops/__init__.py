"""YOLACT's post-network path as fused kernels (``torch.ops.yolact_fast.*``).

Every function here has a pure-PyTorch twin of the same name in
:mod:`yolact_fast.reference`; the two agree to float rounding (masks: except at exact
ties with the threshold). Inputs may be non-contiguous; float32 and float64 are
supported, and float16/bfloat16 for ``decode_boxes``, ``fast_nms``/``cluster_nms`` and
``detect`` (computed in float32, outputs rounded once to the input dtype); all tensors of
one call must share a device and dtype. Bad arguments raise ValueError / TypeError naming
the argument.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence, Tuple

import torch

from .. import _C
from . import _args, _autograd, _meta  # noqa: F401  (autograd formulas, fake kernels)
from ..configs import YolactConfig

__all__ = [
    "make_priors",
    "decode_boxes",
    "fast_nms",
    "cluster_nms",
    "detect",
    "assemble_masks",
    "paste_masks",
    "bits_checksum",
    "cuda_kernels_available",
    "check_nms_options",
]

_ops = torch.ops.yolact_fast


def cuda_kernels_available() -> bool:
    """Whether this build of the extension holds the CUDA kernels."""
    return _C.built_with_cuda()


@functools.lru_cache(maxsize=32)
def _cached_priors(config: YolactConfig, image_size: Tuple[int, int], device: str) -> torch.Tensor:
    return _ops.make_priors(*_args.priors_inputs(config, image_size, device))


def make_priors(
    config: YolactConfig,
    image_size: Tuple[int, int],
    device: Optional[torch.device] = None,
    *,
    cached: bool = True,
) -> torch.Tensor:
    """Anchors of ``config`` for a network input of ``image_size`` = (H, W).

    Returns float32 [P, 4] (cx, cy, w, h) relative, ordered level (P3..), row, column,
    anchor. With ``cached`` (the default) they are computed once per (config, size, device)
    and a fresh copy is returned; ``cached=False`` computes them again (one kernel launch per
    level: what benchmarks time).
    """
    size, device = _args.priors_args(config, image_size, device)
    compute = _cached_priors if cached else _cached_priors.__wrapped__
    try:
        priors = compute(config, size, device)
    except ValueError as error:  # the op names its own argument, feature_sizes
        raise ValueError(f"image_size {size} is too large for make_priors: {error}") from None
    return priors.clone() if cached else priors


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = (0.1, 0.2)) -> torch.Tensor:
    """Box offsets [..., P, 4] and priors [P, 4] (cx, cy, w, h) -> [..., P, 4] x1, y1, x2, y2.

    Bit-identical to the official decode on the CPU (same float32 operations in the same order).
    """
    return _ops.decode_boxes(*_args.decode_args(loc, priors, variances))


def fast_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    coeffs: torch.Tensor,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    score_threshold: float = 0.05,
    max_detections: int = 100,
    method: str = "fast",
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """YOLACT's per-class NMS.

    Args:
        boxes: [P, 4] x1, y1, x2, y2. scores: [C, P] foreground class scores.
        coeffs: [P, k] mask coefficients.
        iou_threshold: a box survives if its IoU with each higher-ranked box is <= this.
        top_k: boxes ranked per class. score_threshold: a prior is a candidate if its best
            class score is > this (and its box is finite).
        method: "fast" (Fast NMS: suppressed boxes still suppress) or "cluster"
            (Cluster-NMS: exactly greedy NMS, only kept boxes suppress).

    Returns:
        boxes [N, 4], coeffs [N, k], labels [N] int64, scores [N], by descending score,
        N <= max_detections. On CUDA, reading N synchronizes; use
        ``torch.ops.yolact_fast.fast_nms`` for padded outputs plus a count tensor.
    """
    return _args.trim_detections(
        _ops.fast_nms(
            *_args.nms_args(boxes, scores, coeffs, iou_threshold, top_k, score_threshold, max_detections, method)
        )
    )


def cluster_nms(boxes, scores, coeffs, iou_threshold=0.5, top_k=200, score_threshold=0.05, max_detections=100):
    """:func:`fast_nms` with ``method="cluster"``: the result of greedy NMS."""
    return fast_nms(boxes, scores, coeffs, iou_threshold, top_k, score_threshold, max_detections, method="cluster")


def detect(
    loc: torch.Tensor,
    conf_logits: torch.Tensor,
    coeffs: torch.Tensor,
    priors: torch.Tensor,
    variances: Sequence[float] = (0.1, 0.2),
    iou_threshold: float = 0.5,
    top_k: int = 200,
    score_threshold: float = 0.05,
    max_detections: int = 100,
    method: str = "fast",
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """YOLACT's Detect from one image's raw head outputs, fused: decode, softmax over the
    classes, candidate selection and per-class top-k in one pass, then :func:`fast_nms`.

    Args:
        loc: [P, 4] box offsets. conf_logits: [P, C + 1] class logits, background first.
        coeffs: [P, k] mask coefficients. priors: [P, 4] (cx, cy, w, h).
        Other arguments as :func:`decode_boxes` and :func:`fast_nms`.

    Returns:
        As :func:`fast_nms` (labels 0..C-1 index the foreground classes). Scores may differ
        from ``torch.softmax``'s by a few ulps (a vectorized exp). On CUDA, reading N
        synchronizes; ``torch.ops.yolact_fast.detect`` returns padded outputs and a count.
    """
    return _args.trim_detections(
        _ops.detect(
            *_args.detect_args(
                loc,
                conf_logits,
                coeffs,
                priors,
                variances,
                iou_threshold,
                top_k,
                score_threshold,
                max_detections,
                method,
            )
        )
    )


def assemble_masks(
    proto: torch.Tensor, coeffs: torch.Tensor, boxes: torch.Tensor, crop_padding: float = 1
) -> torch.Tensor:
    """sigmoid(proto @ coeffs.T) cropped to each box, fused.

    proto [H, W, k], coeffs [N, k], boxes [N, 4] relative x1, y1, x2, y2 -> [N, H, W].
    A pixel (row, col) is kept iff x1 <= col < x2 and y1 <= row < y2 with the box scaled
    to proto pixels, ordered, widened by ``crop_padding`` and clamped to the image.
    """
    return _ops.assemble_masks(*_args.mask_args(proto, coeffs, boxes, crop_padding))


def paste_masks(
    proto: torch.Tensor,
    coeffs: torch.Tensor,
    boxes: torch.Tensor,
    size: Tuple[int, int],
    threshold: float = 0.5,
    crop_padding: float = 1,
) -> torch.Tensor:
    """Full-resolution binary masks: :func:`assemble_masks`, bilinear resize to ``size``
    (align_corners=False), ``> threshold``, fused.

    proto [H, W, k], coeffs [N, k], boxes [N, 4] relative -> bool [N, h, w]. Only the
    pixels each box can reach are computed; the rest are False. ``threshold`` in [0, 1].
    """
    return _ops.paste_masks(*_args.paste_args(proto, coeffs, boxes, size, threshold, crop_padding))


def bits_checksum(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """A checksum of each tensor's bits, in one kernel launch for all of them: a fingerprint
    of many tensors, e.g. to check that two sets of weights are bitwise equal.

    tensors: one tensor at least, all on one device: strided tensors of any dtype (elements
    of 1 to 16 bytes) and strides (conjugate and negative views read as their values).
    Returns int64 [len(tensors)] on that device: tensor t's bytes read as words of
    min(element size, 8) bytes in logical order, word i times a 32-bit odd weight drawn
    from i, summed modulo 2**64 (bit-cast to int64), the same on every device. A change of
    one word (one element; complex128 has two) always changes it; changes of several are
    missed only if they cancel by chance. ``torch.ops.yolact_fast.bits_checksum([])``
    raises the dispatcher's error (no tensor to find a device by); this wrapper a ValueError.
    """
    return _ops.bits_checksum(_args.checksum_args(tensors))


def check_nms_options(score_threshold, iou_threshold, top_k, max_detections, method) -> None:
    """Raises what :func:`fast_nms` and :func:`detect` raise for these options, without
    tensors: TypeError for a value of the wrong type (None, str, a float for an int),
    ValueError naming the option that breaks the rule. The rule (csrc/checks.cpp, the one
    the ops run): ``score_threshold`` a real number, not NaN; ``iou_threshold`` >= 0, not
    NaN (> 1 suppresses nothing); ``top_k`` and ``max_detections`` ints >= 0 (0: no
    detections); ``method`` "fast" or "cluster". (The CUDA kernels also limit
    ``min(top_k, P)`` and the output length to 2048, and every op its tensors to 16 GiB.)"""
    iou_threshold, top_k, score_threshold, max_detections, method = _args.nms_options(
        iou_threshold, top_k, score_threshold, max_detections, method
    )
    _C.check_nms_options(score_threshold, iou_threshold, top_k, max_detections, method)
