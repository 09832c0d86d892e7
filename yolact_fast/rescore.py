"""YOLACT++ mask re-scoring: each detection's score times the predicted IoU of its mask."""

from __future__ import annotations

from types import ModuleType

import torch
from torch import nn

from .instances import Instances


def predicted_mask_iou(
    maskiou_net: nn.Module,
    proto: torch.Tensor,
    coeffs: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    ops_module: ModuleType,
) -> torch.Tensor:
    """float32 [n]: ``maskiou_net``'s IoU prediction for each detection's class, from its
    cropped mask at proto resolution (proto [ph,pw,k], coeffs [n,k], boxes [n,4] relative
    x1,y1,x2,y2, labels int64 [n])."""
    masks = ops_module.assemble_masks(proto, coeffs, boxes)  # [n,ph,pw], in proto's dtype
    weight = next(maskiou_net.parameters())
    per_class = maskiou_net(masks.unsqueeze(1).to(weight.dtype))  # [n,C]
    return per_class.gather(1, labels.view(-1, 1)).squeeze(1)


def rescore_masks(
    instances: Instances,
    maskiou_net: nn.Module,
    proto: torch.Tensor,
    coeffs: torch.Tensor,
    boxes: torch.Tensor,
    ops_module: ModuleType,
) -> Instances:
    """``instances`` (in detection order; coeffs [n,k] and relative boxes [n,4] in the same
    order) with ``scores`` = box score x predicted mask IoU, ``box_scores`` = the box score,
    ordered by the new ``scores`` descending (as the official display path)."""
    if len(instances) == 0:
        return instances
    mask_scores = instances.box_scores * predicted_mask_iou(
        maskiou_net, proto, coeffs, boxes, instances.labels, ops_module
    ).to(instances.box_scores.dtype)
    order = torch.argsort(mask_scores, descending=True, stable=True)
    return Instances(
        instances.boxes[order],
        mask_scores[order],
        instances.labels[order],
        instances.masks[order],
        instances.class_names,
        instances.box_scores[order],
    )
