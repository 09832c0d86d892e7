"""Fake (meta) kernels: output shapes of the yolact_fast ops for torch.compile and opcheck.

Every output shape follows from input shapes and arguments alone (fast_nms pads to a
static length and returns the count separately), so no data-dependent sizes arise.
"""

import torch

from . import _C  # noqa: F401  (defines the op schemas)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_same_device(first: str, tensor, **others) -> None:
    """The message of csrc/checks.h: meta tensors mixed with real ones reach the fake
    kernels, which must reject them as the device kernels reject mixed devices."""
    for name, other in others.items():
        _check(other.device == tensor.device,
               f"{name} must be on the device of {first} ({tensor.device}), got {other.device}")


@torch.library.register_fake("yolact_fast::make_priors")
def _make_priors(anchor_wh, feature_sizes, anchors_per_level):
    _check(len(feature_sizes) == 2 * len(anchors_per_level), "feature_sizes must hold (h, w) per level")
    total = sum(
        feature_sizes[2 * i] * feature_sizes[2 * i + 1] * a for i, a in enumerate(anchors_per_level)
    )
    return anchor_wh.new_empty((total, 4), dtype=torch.float32)


@torch.library.register_fake("yolact_fast::decode_boxes")
def _decode_boxes(loc, priors, variance_xy, variance_wh):
    _check_same_device("loc", loc, priors=priors)
    _check(loc.dim() >= 2 and loc.shape[-1] == 4, "loc must be [..., P, 4]")
    return torch.empty_like(loc, memory_format=torch.contiguous_format)


@torch.library.register_fake("yolact_fast::fast_nms")
def _fast_nms(boxes, scores, coeffs, iou_threshold, top_k, score_threshold, max_detections, method):
    _check_same_device("boxes", boxes, scores=scores, coeffs=coeffs)
    _check(scores.dim() == 2 and coeffs.dim() == 2, "scores must be [C, P], coeffs [P, k]")
    num_classes, num_priors = scores.shape
    rows = min(max_detections, num_classes * min(top_k, num_priors))
    return (
        boxes.new_empty((rows, 4)),
        coeffs.new_empty((rows, coeffs.shape[1])),
        boxes.new_empty((rows,), dtype=torch.int64),
        boxes.new_empty((rows,)),
        boxes.new_empty((), dtype=torch.int64),
    )


@torch.library.register_fake("yolact_fast::detect")
def _detect(loc, conf_logits, coeffs, priors, variance_xy, variance_wh, iou_threshold, top_k,
            score_threshold, max_detections, method):
    _check(loc.dim() == 2 and conf_logits.dim() == 2 and coeffs.dim() == 2,
           "loc must be [P, 4], conf_logits [P, C + 1], coeffs [P, k]")
    num_priors, num_classes = conf_logits.shape[0], conf_logits.shape[1] - 1
    rows = min(max_detections, num_classes * min(top_k, num_priors))
    return (
        loc.new_empty((rows, 4)),
        coeffs.new_empty((rows, coeffs.shape[1])),
        loc.new_empty((rows,), dtype=torch.int64),
        loc.new_empty((rows,)),
        loc.new_empty((), dtype=torch.int64),
    )


@torch.library.register_fake("yolact_fast::assemble_masks")
def _assemble_masks(proto, coeffs, boxes, crop_padding):
    _check_same_device("proto", proto, coeffs=coeffs, boxes=boxes)
    _check(proto.dim() == 3 and coeffs.dim() == 2, "proto must be [H, W, k], coeffs [N, k]")
    return proto.new_empty((coeffs.shape[0], proto.shape[0], proto.shape[1]))


@torch.library.register_fake("yolact_fast::paste_masks")
def _paste_masks(proto, coeffs, boxes, size, threshold, crop_padding):
    _check_same_device("proto", proto, coeffs=coeffs, boxes=boxes)
    _check(proto.dim() == 3 and coeffs.dim() == 2, "proto must be [H, W, k], coeffs [N, k]")
    return proto.new_empty((coeffs.shape[0], size[0], size[1]), dtype=torch.bool)
