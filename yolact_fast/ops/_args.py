"""Argument coercion shared by :mod:`yolact_fast.ops`, the emulated CUDA ops and export.

The ops check their arguments themselves (csrc/checks.cpp, mirrored by the fake kernels in
_meta.py). These helpers only turn Python values into what the schemas take, with a
TypeError (wrong type) or ValueError (wrong value) naming the argument where the dispatcher
would raise a bare RuntimeError (None, str, a float for an int, numpy scalars, ints beyond
int64). Library options that are ints use :func:`as_int` with a ``minimum``.
"""

from __future__ import annotations

import numbers
from typing import Optional, Sequence, Tuple

import torch

from ..configs import YolactConfig, anchor_sizes, feature_sizes


def check_tensor(value, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def as_int(value, name: str, minimum: Optional[int] = None) -> int:
    """``value`` as the int64 of an ``int`` argument: TypeError unless an int (not a bool),
    ValueError beyond int64 or below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{name} must fit in int64 (|{name}| < 2**63), got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def as_float(value, name: str) -> float:
    """``value`` as the float64 of a ``float`` argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name} must fit in float64, got {value}") from None


def as_str(value, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


def check_size(size, name: str = "size") -> Tuple[int, int]:
    """``size`` as a pair of int64 (h, w)."""
    if isinstance(size, (torch.Tensor, str)) or not isinstance(size, Sequence) or len(size) != 2:
        raise TypeError(f"{name} must be a pair (h, w) of ints, got {size!r}")
    return as_int(size[0], f"{name}[0]"), as_int(size[1], f"{name}[1]")


def image_size_arg(image_size) -> Tuple[int, int]:
    """A network input size (h, w) of positive ints."""
    size = check_size(image_size, "image_size")
    if min(size) < 1:
        raise ValueError(f"image_size must be positive, got {tuple(image_size)}")
    return size


def priors_inputs(config: YolactConfig, image_size: Tuple[int, int], device: str):
    """The make_priors kernel's arguments: anchor (w, h) float64 [A, 2] and, flattened,
    (h, w) and the anchor count of each level."""
    levels = feature_sizes(image_size, config.num_levels)
    sizes = anchor_sizes(config)
    anchor_wh = torch.tensor([wh for level in sizes for wh in level], dtype=torch.float64)
    return (anchor_wh.view(-1, 2).to(device), [s for hw in levels for s in hw], [len(level) for level in sizes])


def priors_args(config, image_size, device) -> Tuple[Tuple[int, int], str]:
    """Validated (image_size, device name) of a make_priors call."""
    if not isinstance(config, YolactConfig):
        raise TypeError(f"config must be a YolactConfig, got {type(config).__name__}")
    size = image_size_arg(image_size)
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return size, str(device)


def decode_args(loc, priors, variances):
    check_tensor(loc, "loc")
    check_tensor(priors, "priors")
    if isinstance(variances, str) or not isinstance(variances, Sequence) or len(variances) != 2:
        raise ValueError(f"variances must be a pair (xy, wh), got {variances!r}")
    return (loc, priors, as_float(variances[0], "variances[0]"), as_float(variances[1], "variances[1]"))


def nms_args(boxes, scores, coeffs, iou_threshold, top_k, score_threshold, max_detections, method):
    for value, name in ((boxes, "boxes"), (scores, "scores"), (coeffs, "coeffs")):
        check_tensor(value, name)
    return (boxes, scores, coeffs) + nms_options(iou_threshold, top_k, score_threshold, max_detections, method)


def nms_options(iou_threshold, top_k, score_threshold, max_detections, method):
    """The NMS options as the ops take them (in their order)."""
    return (
        as_float(iou_threshold, "iou_threshold"),
        as_int(top_k, "top_k"),
        as_float(score_threshold, "score_threshold"),
        as_int(max_detections, "max_detections"),
        as_str(method, "method"),
    )


def detect_args(
    loc, conf_logits, coeffs, priors, variances, iou_threshold, top_k, score_threshold, max_detections, method
):
    loc, priors, variance_xy, variance_wh = decode_args(loc, priors, variances)
    check_tensor(conf_logits, "conf_logits")
    check_tensor(coeffs, "coeffs")
    return (loc, conf_logits, coeffs, priors, variance_xy, variance_wh) + nms_options(
        iou_threshold, top_k, score_threshold, max_detections, method
    )


def mask_args(proto, coeffs, boxes, crop_padding):
    for value, name in ((proto, "proto"), (coeffs, "coeffs"), (boxes, "boxes")):
        check_tensor(value, name)
    return proto, coeffs, boxes, as_float(crop_padding, "crop_padding")


def paste_args(proto, coeffs, boxes, size, threshold, crop_padding):
    proto, coeffs, boxes, crop_padding = mask_args(proto, coeffs, boxes, crop_padding)
    return (proto, coeffs, boxes, list(check_size(size)), as_float(threshold, "threshold"), crop_padding)


def checksum_args(tensors) -> list:
    """``tensors`` (a sequence of tensors) as the list the schema takes."""
    if isinstance(tensors, (torch.Tensor, str)) or not isinstance(tensors, Sequence):
        raise TypeError(f"tensors must be a sequence of torch.Tensor, got {type(tensors).__name__}")
    if len(tensors) == 0:  # the dispatcher would find no device
        raise ValueError("tensors must hold at least one tensor")
    for i, value in enumerate(tensors):
        check_tensor(value, f"tensors[{i}]")
    return list(tensors)


def trim_detections(padded):
    """(boxes, coeffs, labels, scores, count) padded -> the first count rows of each."""
    *outputs, count = padded
    n = int(count)
    return tuple(t[:n] for t in outputs)
