"""Box utilities shared by inference, training and the reference ops (as torchvision.ops.boxes).

Boxes are [..., 4] tensors, either ``xyxy`` (x1, y1, x2, y2) or ``cxcywh`` (centre, size),
in relative or pixel units. The arithmetic follows the official YOLACT code operation by
operation, so results are bit-identical to it.
"""

from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["box_convert", "point_form", "box_iou", "box_ioa", "crop_bounds", "boxes_to_pixels"]


def point_form(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x1, y1, x2, y2) (official ``point_form``)."""
    centres, sizes = boxes[..., :2], boxes[..., 2:]
    return torch.cat([centres - sizes / 2, centres + sizes / 2], dim=-1)


def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    """[..., 4] boxes from ``in_fmt`` to ``out_fmt``, each "xyxy" or "cxcywh"."""
    formats = ("xyxy", "cxcywh")
    if in_fmt not in formats or out_fmt not in formats:
        raise ValueError(f"box formats must be one of {formats}, got {in_fmt!r} -> {out_fmt!r}")
    if in_fmt == out_fmt:
        return boxes.clone()
    if in_fmt == "cxcywh":
        return point_form(boxes)
    top_left, bottom_right = boxes[..., :2], boxes[..., 2:]
    return torch.cat([(top_left + bottom_right) / 2, bottom_right - top_left], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of xyxy boxes [..., A, 4] against [..., B, 4] -> [..., A, B] (official order)."""
    max_xy = torch.min(a[..., :, None, 2:], b[..., None, :, 2:])
    min_xy = torch.max(a[..., :, None, :2], b[..., None, :, :2])
    inter = torch.clamp(max_xy - min_xy, min=0).prod(-1)
    area_a = ((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]))[..., :, None]
    area_b = ((b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]))[..., None, :]
    return inter / (area_a + area_b - inter)


def box_ioa(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection of xyxy boxes [A, 4] and [B, 4] over the area of each ``a`` box -> [A, B]."""
    top_left = torch.max(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    return inter / (a[:, 2:] - a[:, :2]).prod(-1)[:, None]


def crop_bounds(lo: torch.Tensor, hi: torch.Tensor, size: int, padding: float):
    """Official ``sanitize_coordinates(cast=False)``: relative ``lo``, ``hi`` [N] scaled to
    ``size`` pixels, ordered, widened by ``padding`` and clamped to [0, size]."""
    lo, hi = lo * size, hi * size
    lo, hi = torch.min(lo, hi), torch.max(lo, hi)
    return torch.clamp(lo - padding, min=0), torch.clamp(hi + padding, max=size)


def boxes_to_pixels(boxes: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Relative xyxy [N, 4] -> pixel boxes of an image of ``size`` (h, w), ordered and
    clamped to the image (official postprocess, without the final ``.long()``): per axis,
    :func:`crop_bounds` with no padding, the same float operations (zeros may differ in
    sign). Both axes go through the ordering together: 8 small kernels on a GPU and no
    host-to-device copy (which would wait for the stream), where two crop_bounds and a stack
    take 17."""
    h, w = size
    # float16/bfloat16 boxes are scaled in float32, where a product by an int is computed,
    # and rounded once
    compute = torch.promote_types(boxes.dtype, torch.float32)
    corners = boxes.reshape(-1, 2, 2).to(compute, copy=True)  # [N, (corner), (x, y)]
    corners[..., 0].mul_(w)
    corners[..., 1].mul_(h)
    lo, hi = torch.aminmax(corners.to(boxes.dtype), dim=1)
    hi[:, 0].clamp_(max=w)
    hi[:, 1].clamp_(max=h)
    return torch.cat([lo.clamp(min=0), hi], dim=1)
