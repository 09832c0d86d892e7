"""Fake (meta) kernels: output shapes of the yolact_fast ops for torch.compile, export and
opcheck, and the argument checks of csrc/checks.cpp mirrored with ``torch._check_*`` (as
pytorch/extension-cpp does), so that fake and device kernels refuse the same arguments
with the same exception type, naming the same argument. The NMS options are checked by
the C++ rule itself (``_C.check_nms_options``: they are plain numbers here too).

Every output shape follows from input shapes and arguments alone (fast_nms pads to a
static length and returns the count separately), so no data-dependent sizes arise.
"""

import torch

from .. import _C  # the op schemas and the C++ rules

_MAX_ALLOCATION_BYTES = _C.max_allocation_bytes  # csrc/checks.h kMaxAllocationBytes
_FLOATS = (torch.float32, torch.float64)
_FLOATS_AND_REDUCED = _FLOATS + (torch.float16, torch.bfloat16)


def _value(condition, message: str) -> None:
    torch._check_value(condition, lambda: message)


def _type(condition, message: str) -> None:
    torch._check_type(condition, lambda: message)


def _floating(t, name: str, reduced: bool = True) -> None:
    if reduced:
        _type(t.dtype in _FLOATS_AND_REDUCED, f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    else:
        _type(t.dtype in _FLOATS, f"{name} must be float32 or float64, got {t.dtype}")


def _same(first: str, tensor, **others) -> None:
    """dtype and device of ``others`` equal those of ``tensor``. Meta tensors mixed with
    real ones reach the fake kernels, which must reject them as the device kernels reject
    mixed devices."""
    for name, other in others.items():
        _type(other.dtype == tensor.dtype, f"{name} must have the dtype of {first} ({tensor.dtype}), got {other.dtype}")
    for name, other in others.items():
        _value(
            other.device == tensor.device,
            f"{name} must be on the device of {first} ({tensor.device}), got {other.device}",
        )


def _allocation(shape, element_size: int, op: str, name: str) -> None:
    count = element_size
    for size in shape:
        count = count * size
    _value(
        count <= _MAX_ALLOCATION_BYTES,
        f"{name}: {op} would allocate a tensor of shape {list(shape)} with {element_size}-byte "
        f"elements, {count} bytes: more than the limit of 2^34 bytes (16 GiB) per tensor",
    )


def _input_copies(op: str, **inputs) -> None:
    """Inputs are copied (contiguous, float16/bfloat16 widened) or give an output of their
    shape; an expanded view may describe far more than the memory behind it."""
    for name, t in inputs.items():
        _allocation(t.shape, max(t.element_size(), 4), op, name)


def _int64(value: int, name: str) -> None:
    _value(-(2**63) <= value < 2**63, f"{name}: the size {value} overflows int64")


def _compute_size(t) -> int:
    """Bytes of an element of the NMS outputs as computed (float32 for float16/bfloat16)."""
    return 4 if t.dtype in (torch.float16, torch.bfloat16) else t.element_size()


@torch.library.register_fake("yolact_fast::make_priors")
def _make_priors(anchor_wh, feature_sizes, anchors_per_level):
    _floating(anchor_wh, "anchor_wh", reduced=False)
    _value(
        anchor_wh.dim() == 2 and anchor_wh.shape[-1] == 2,
        f"anchor_wh must be [A, 2] (2 dims), got shape {list(anchor_wh.shape)}",
    )
    _value(
        len(feature_sizes) == 2 * len(anchors_per_level),
        f"feature_sizes must hold (h, w) for each of the {len(anchors_per_level)} levels, "
        f"got {len(feature_sizes)} values",
    )
    total = 0
    for level, anchors in enumerate(anchors_per_level):
        h, w = feature_sizes[2 * level], feature_sizes[2 * level + 1]
        _value(
            h >= 0 and w >= 0 and anchors >= 0,
            f"feature_sizes and anchors_per_level must be >= 0, got level {level} ({h}, {w}) with {anchors} anchors",
        )
        _int64(h * w * anchors, "feature_sizes")
        total += h * w * anchors
        _int64(total, "feature_sizes")
    _allocation((total, 4), 4, "make_priors", "feature_sizes")
    _value(
        anchor_wh.shape[0] == sum(anchors_per_level),
        f"anchor_wh must have sum(anchors_per_level) = {sum(anchors_per_level)} rows, got {anchor_wh.shape[0]}",
    )
    return anchor_wh.new_empty((total, 4), dtype=torch.float32)


def _check_decode(loc, priors, variance_xy, variance_wh, op) -> None:
    _floating(loc, "loc")
    _same("loc", loc, priors=priors)
    _value(
        priors.dim() == 2 and priors.shape[-1] == 4,
        f"priors must be [P, 4] (cx, cy, w, h), got shape {list(priors.shape)}",
    )
    _value(
        loc.dim() >= 2 and loc.shape[-1] == 4 and loc.shape[-2] == priors.shape[0],
        f"loc must be [..., P, 4] with P = priors.shape[0] = {priors.shape[0]}, got shape {list(loc.shape)}",
    )
    _input_copies(op, loc=loc, priors=priors)
    for value, name in ((variance_xy, "variances[0]"), (variance_wh, "variances[1]")):
        _value(abs(value) < float("inf"), f"{name} must be a finite number, got {value}")


@torch.library.register_fake("yolact_fast::decode_boxes")
def _decode_boxes(loc, priors, variance_xy, variance_wh):
    _check_decode(loc, priors, variance_xy, variance_wh, "decode_boxes")
    return torch.empty_like(loc, memory_format=torch.contiguous_format)


def _nms_outputs(
    op, first, coeffs, num_classes, num_priors, score_threshold, iou_threshold, top_k, max_detections, method
):
    _C.check_nms_options(score_threshold, iou_threshold, top_k, max_detections, method)
    rows = min(max_detections, num_classes * min(top_k, num_priors))
    _allocation((rows, max(coeffs.shape[1], 4)), _compute_size(first), op, "max_detections (with top_k)")
    return (
        first.new_empty((rows, 4)),
        coeffs.new_empty((rows, coeffs.shape[1])),
        first.new_empty((rows,), dtype=torch.int64),
        first.new_empty((rows,)),
        first.new_empty((), dtype=torch.int64),
    )


@torch.library.register_fake("yolact_fast::fast_nms")
def _fast_nms(boxes, scores, coeffs, iou_threshold, top_k, score_threshold, max_detections, method):
    _floating(boxes, "boxes")
    _same("boxes", boxes, scores=scores, coeffs=coeffs)
    _value(
        boxes.dim() == 2 and boxes.shape[-1] == 4,
        f"boxes must be [P, 4] (x1, y1, x2, y2), got shape {list(boxes.shape)}",
    )
    P = boxes.shape[0]
    _value(
        scores.dim() == 2 and scores.shape[1] == P,
        f"scores must be [C, P] with P = {P} (boxes.shape[0]), got shape {list(scores.shape)}",
    )
    _value(
        coeffs.dim() == 2 and coeffs.shape[0] == P,
        f"coeffs must be [P, k] with P = {P} (boxes.shape[0]), got shape {list(coeffs.shape)}",
    )
    _input_copies("fast_nms", boxes=boxes, scores=scores, coeffs=coeffs)
    return _nms_outputs(
        "fast_nms", boxes, coeffs, scores.shape[0], P, score_threshold, iou_threshold, top_k, max_detections, method
    )


@torch.library.register_fake("yolact_fast::detect")
def _detect(
    loc,
    conf_logits,
    coeffs,
    priors,
    variance_xy,
    variance_wh,
    iou_threshold,
    top_k,
    score_threshold,
    max_detections,
    method,
):
    _value(loc.dim() == 2, f"loc must be [P, 4] (one image), got shape {list(loc.shape)}")
    _check_decode(loc, priors, variance_xy, variance_wh, "detect")
    _same("loc", loc, conf_logits=conf_logits, coeffs=coeffs)
    P = loc.shape[0]
    _value(
        conf_logits.dim() == 2 and conf_logits.shape[0] == P and conf_logits.shape[1] >= 1,
        f"conf_logits must be [P, C + 1] (background first) with P = {P} (loc.shape[0]), "
        f"got shape {list(conf_logits.shape)}",
    )
    _value(
        coeffs.dim() == 2 and coeffs.shape[0] == P,
        f"coeffs must be [P, k] with P = {P} (loc.shape[0]), got shape {list(coeffs.shape)}",
    )
    _input_copies("detect", conf_logits=conf_logits, coeffs=coeffs)
    return _nms_outputs(
        "detect",
        loc,
        coeffs,
        conf_logits.shape[1] - 1,
        P,
        score_threshold,
        iou_threshold,
        top_k,
        max_detections,
        method,
    )


def _check_mask_inputs(proto, coeffs, boxes, crop_padding, op) -> None:
    _floating(proto, "proto")
    _same("proto", proto, coeffs=coeffs, boxes=boxes)
    _value(proto.dim() == 3, f"proto must be [H, W, k] (3 dims), got shape {list(proto.shape)}")
    _value(all(s < 2**31 for s in proto.shape), f"proto must have H, W, k < 2^31, got shape {list(proto.shape)}")
    _value(
        coeffs.dim() == 2 and coeffs.shape[1] == proto.shape[2],
        f"coeffs must be [N, k] with k = proto.shape[2] = {proto.shape[2]}, got shape {list(coeffs.shape)}",
    )
    _value(
        boxes.dim() == 2 and boxes.shape[1] == 4 and boxes.shape[0] == coeffs.shape[0],
        f"boxes must be [N, 4] with N = coeffs.shape[0] = {coeffs.shape[0]}, got shape {list(boxes.shape)}",
    )
    _input_copies(op, proto=proto, coeffs=coeffs, boxes=boxes)
    _value(0 <= crop_padding < float("inf"), f"crop_padding must be a finite number >= 0, got {crop_padding}")


@torch.library.register_fake("yolact_fast::assemble_masks")
def _assemble_masks(proto, coeffs, boxes, crop_padding):
    _check_mask_inputs(proto, coeffs, boxes, crop_padding, "assemble_masks")
    H, W, N = proto.shape[0], proto.shape[1], coeffs.shape[0]
    _allocation((max(N, 1), H, W), proto.element_size(), "assemble_masks", "boxes (N masks of proto's H x W)")
    return proto.new_empty((N, H, W))


@torch.library.register_fake("yolact_fast::paste_masks")
def _paste_masks(proto, coeffs, boxes, size, threshold, crop_padding):
    _check_mask_inputs(proto, coeffs, boxes, crop_padding, "paste_masks")
    _value(len(size) == 2 and size[0] >= 0 and size[1] >= 0, f"size must be (h, w) with h, w >= 0, got {list(size)}")
    _value(0 <= threshold <= 1, f"threshold must be in [0, 1] (masks are probabilities), got {threshold}")
    N, (H, W) = coeffs.shape[0], proto.shape[:2]
    _allocation((max(N, 1), size[0], size[1]), 1, "paste_masks", "size (with N = boxes.shape[0])")
    if N != 0 and size[0] != 0 and size[1] != 0:
        _value(
            H > 0 and W > 0,
            f"proto must have H, W > 0 to paste masks of size {list(size)}, got shape {list(proto.shape)}",
        )
        _allocation((size[0] + size[1], 3), 8, "paste_masks", "size")
        _allocation((H + 2, size[1]), 8, "paste_masks", "size (with proto's H)")
    return proto.new_empty((N, size[0], size[1]), dtype=torch.bool)


@torch.library.register_fake("yolact_fast::bits_checksum")
def _bits_checksum(tensors):
    _value(len(tensors) > 0, "tensors must hold at least one tensor")
    for i, t in enumerate(tensors):
        _value(
            t.device == tensors[0].device,
            f"tensors[{i}] must be on the device of tensors[0] ({tensors[0].device}), got {t.device}",
        )
        _type(
            t.element_size() in (1, 2, 4, 8, 16),
            f"tensors[{i}] must have elements of 1, 2, 4, 8 or 16 bytes, got {t.dtype}",
        )
    return tensors[0].new_empty((len(tensors),), dtype=torch.int64)
