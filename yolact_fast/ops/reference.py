"""Pure-PyTorch twins of every op in :mod:`yolact_fast.ops`.

These follow the official YOLACT code operation by operation (same float32 arithmetic in
the same order), so they are the test oracle for the kernels and the baseline in the
benchmarks. They are slow on purpose: no fusion, full-image work.

Two documented deviations from the official code, both only for inputs the official code
never sees: ties in scores are broken by index (stable sorts), and priors whose decoded box
has a non-finite coordinate are never candidates.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

from .boxes import box_iou, crop_bounds
from ..configs import YolactConfig, anchor_sizes, feature_sizes


def make_priors(config: YolactConfig, image_size: Tuple[int, int], device=None) -> torch.Tensor:
    """Priors [P,4] float32 (cx, cy, w, h) relative; order level, row, column, anchor.

    The official loop's float64 values ((i + 0.5) / conv_w, ...), computed as tensors."""
    levels = []
    for (conv_h, conv_w), sizes in zip(feature_sizes(tuple(image_size), config.num_levels), anchor_sizes(config)):
        level = torch.empty((conv_h, conv_w, len(sizes), 4), dtype=torch.float64)
        level[..., 0] = ((torch.arange(conv_w, dtype=torch.float64) + 0.5) / conv_w)[:, None]
        level[..., 1] = ((torch.arange(conv_h, dtype=torch.float64) + 0.5) / conv_h)[:, None, None]
        level[..., 2:] = torch.tensor(sizes, dtype=torch.float64)
        levels.append(level.view(-1, 4))
    return torch.cat(levels).to(device=device, dtype=torch.float32)


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = (0.1, 0.2)) -> torch.Tensor:
    """[..., P, 4] offsets and [P, 4] priors -> [..., P, 4] (x1, y1, x2, y2) relative."""
    centers = priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:]
    sizes = priors[..., 2:] * torch.exp(loc[..., 2:] * variances[1])
    top_left = centers - sizes / 2
    return torch.cat([top_left, sizes + top_left], dim=-1)


def candidate_mask(boxes: torch.Tensor, scores: torch.Tensor, score_threshold: float) -> torch.Tensor:
    """[P] bool: best class score > threshold (NaN never passes) and a finite box."""
    if scores.shape[0] == 0:
        return torch.zeros(scores.shape[1], dtype=torch.bool, device=scores.device)
    best = scores.max(dim=0).values
    return (best > score_threshold) & torch.isfinite(boxes).all(dim=1)


def fast_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    coeffs: torch.Tensor,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    score_threshold: float = 0.05,
    max_detections: int = 100,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fast NMS (YOLACT's matrix form), per class: a box survives if its IoU with every
    higher-scoring box of its class is <= iou_threshold, suppressed boxes included.

    boxes [P,4] x1y1x2y2, scores [C,P] foreground probabilities, coeffs [P,k]
    -> (boxes [N,4], coeffs [N,k], labels [N] int64, scores [N]), scores descending.
    """
    return _per_class_nms(boxes, scores, coeffs, iou_threshold, top_k, score_threshold, max_detections, _fast_survivors)


def cluster_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    coeffs: torch.Tensor,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    score_threshold: float = 0.05,
    max_detections: int = 100,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cluster-NMS's result, computed as traditional greedy NMS per class on the same
    candidates as :func:`fast_nms`: a box is dropped when its IoU with an earlier *kept* box
    exceeds the threshold."""
    return _per_class_nms(
        boxes, scores, coeffs, iou_threshold, top_k, score_threshold, max_detections, _greedy_survivors
    )


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
    """The official Detect sequence on one image's raw head outputs: decode, softmax over
    the C + 1 classes, drop the background, transpose to [C, P], then Fast NMS
    (``method="fast"``) or :func:`cluster_nms` (``"cluster"``).

    loc [P,4], conf_logits [P,C+1], coeffs [P,k], priors [P,4] -> as :func:`fast_nms`.
    """
    nms = {"fast": fast_nms, "cluster": cluster_nms}.get(method) if isinstance(method, str) else None
    if nms is None:
        raise ValueError(f"method must be 'fast' or 'cluster', got {method!r}")
    boxes = decode_boxes(loc, priors, variances)
    scores = torch.softmax(conf_logits, dim=-1)[:, 1:].t()
    return nms(boxes, scores, coeffs, iou_threshold, top_k, score_threshold, max_detections)


def _fast_survivors(iou: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """[C,K,K] IoU of ranked boxes -> [C,K] keep (official: triu, max over rows, <=)."""
    return iou.triu(diagonal=1).max(dim=1).values <= iou_threshold


def _greedy_survivors(iou: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    keep = torch.zeros(iou.shape[:2], dtype=torch.bool, device=iou.device)
    for c in range(iou.shape[0]):
        for j in range(iou.shape[1]):
            overlap = iou[c, :j, j][keep[c, :j]]
            keep[c, j] = not bool((~(overlap <= iou_threshold)).any())
    return keep


def _per_class_nms(boxes, scores, coeffs, iou_threshold, top_k, score_threshold, max_detections, survivors):
    keep_prior = candidate_mask(boxes, scores, score_threshold)
    boxes, coeffs, scores = boxes[keep_prior], coeffs[keep_prior], scores[:, keep_prior]
    num_classes = scores.shape[0]
    scores, idx = scores.sort(dim=1, descending=True, stable=True)
    idx, scores = idx[:, :top_k], scores[:, :top_k]
    if idx.numel() == 0:
        return _empty_detections(boxes, coeffs)
    class_boxes = boxes[idx]  # [C, K, 4]
    keep = survivors(box_iou(class_boxes, class_boxes), iou_threshold)

    labels = torch.arange(num_classes, device=boxes.device)[:, None].expand_as(keep)[keep]
    kept_boxes, kept_coeffs, kept_scores = class_boxes[keep], coeffs[idx[keep]], scores[keep]
    kept_scores, order = kept_scores.sort(descending=True, stable=True)
    order, kept_scores = order[:max_detections], kept_scores[:max_detections]
    return kept_boxes[order], kept_coeffs[order], labels[order], kept_scores


def _empty_detections(boxes, coeffs):
    return (
        boxes.new_zeros((0, 4)),
        coeffs.new_zeros((0, coeffs.shape[1])),
        torch.zeros(0, dtype=torch.int64, device=boxes.device),
        boxes.new_zeros((0,)),
    )


def crop(masks: torch.Tensor, boxes: torch.Tensor, padding: float = 1) -> torch.Tensor:
    """masks [H,W,N] * (x1 <= col < x2 and y1 <= row < y2) for each box [N,4] relative."""
    h, w, _ = masks.shape
    x1, x2 = crop_bounds(boxes[:, 0], boxes[:, 2], w, padding)
    y1, y2 = crop_bounds(boxes[:, 1], boxes[:, 3], h, padding)
    cols = torch.arange(w, device=masks.device, dtype=masks.dtype)[None, :, None]
    rows = torch.arange(h, device=masks.device, dtype=masks.dtype)[:, None, None]
    inside = (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    return masks * inside.to(masks.dtype)


def assemble_masks(
    proto: torch.Tensor, coeffs: torch.Tensor, boxes: torch.Tensor, crop_padding: float = 1
) -> torch.Tensor:
    """proto [H,W,k], coeffs [N,k], boxes [N,4] relative -> float [N,H,W] cropped sigmoid masks."""
    masks = torch.sigmoid(proto @ coeffs.t())
    masks = crop(masks, boxes, crop_padding)
    return masks.permute(2, 0, 1).contiguous()


def paste_masks(
    proto: torch.Tensor,
    coeffs: torch.Tensor,
    boxes: torch.Tensor,
    size: Tuple[int, int],
    threshold: float = 0.5,
    crop_padding: float = 1,
) -> torch.Tensor:
    """assemble_masks -> bilinear resize to ``size`` (align_corners=False) -> ``> threshold``.

    Returns bool [N, h, w].
    """
    masks = assemble_masks(proto, coeffs, boxes, crop_padding)
    if masks.shape[0] == 0:
        return torch.zeros((0, *size), dtype=torch.bool, device=proto.device)
    masks = F.interpolate(masks[None], tuple(size), mode="bilinear", align_corners=False)[0]
    return masks > threshold


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    """murmur3's 32-bit finalizer of int64 ``h`` < 2**32 (products kept to 32 bits)."""
    mask = 0xFFFFFFFF
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & mask
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & mask
    return h ^ (h >> 16)


def _checksum_weights(count: int, device) -> torch.Tensor:
    """Word i's odd weight: a hash of i mod 2**12, made odd, xor an even hash of i >> 12
    (csrc/common/checksum_math.h)."""
    i = torch.arange(count, dtype=torch.int64, device=device)
    mask = 0xFFFFFFFF
    position = _fmix32(((i & 4095) + 0x9E3779B9) & mask) | 1
    block = i >> 12
    block = _fmix32((block & mask) ^ (((block >> 32) * 0x9E3779B1) & mask)) & ~1
    return position ^ block


def bits_checksum(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """int64 [len(tensors)]: each tensor's values' bytes as words of min(element size, 8)
    bytes, zero-extended, times their weights, summed modulo 2**64 (int64 arithmetic wraps)."""
    if len(tensors) == 0:
        raise ValueError("tensors must hold at least one tensor")
    sums = []
    for tensor in tensors:
        width = min(tensor.element_size(), 8)
        values = tensor.detach().resolve_conj().resolve_neg().contiguous().reshape(-1)
        words = (
            values.view(torch.uint8)
            .view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[width])
            .to(torch.int64)
        )
        if width < 8:
            words = words & ((1 << (8 * width)) - 1)
        sums.append((words * _checksum_weights(words.numel(), words.device)).sum())
    return torch.stack(sums)
