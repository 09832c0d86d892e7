"""SSD-style training augmentation on (uint8 [3,H,W] image, target) pairs.

Every geometric transform moves masks with the image and recomputes boxes from the masks, so
boxes and masks stay consistent; instances that lose their mask are dropped. Randomness comes
from an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
import torch

from ..ops.boxes import box_iou

Target = Dict[str, torch.Tensor]
Sample = Tuple[torch.Tensor, Target]


def photometric_distort(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random brightness, contrast and saturation (each with probability 1/2). uint8 in/out."""
    x = image.float()
    if rng.random() < 0.5:
        x = x + float(rng.uniform(-32, 32))
    if rng.random() < 0.5:
        x = x * float(rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:
        gray = x.mean(0, keepdim=True)
        x = gray + (x - gray) * float(rng.uniform(0.5, 1.5))
    return x.clamp(0, 255).round().to(torch.uint8)


def mirror(image: torch.Tensor, target: Target) -> Sample:
    """Horizontal flip."""
    width = image.shape[-1]
    target = dict(target)
    for key in ("boxes", "crowd_boxes"):
        if key in target:
            boxes = target[key].clone()
            boxes[:, 0], boxes[:, 2] = width - target[key][:, 2], width - target[key][:, 0]
            target[key] = boxes
    target["masks"] = target["masks"].flip(-1)
    return image.flip(-1), target


def expand(image: torch.Tensor, target: Target, rng: np.random.Generator, max_ratio: float = 2.0) -> Sample:
    """Place the image at a random spot of a canvas up to ``max_ratio`` times larger, filled
    with the image's mean colour."""
    _, height, width = image.shape
    ratio = float(rng.uniform(1, max_ratio))
    new_h, new_w = int(height * ratio), int(width * ratio)
    top, left = int(rng.integers(0, new_h - height + 1)), int(rng.integers(0, new_w - width + 1))
    canvas = image.float().mean((1, 2), keepdim=True).round().to(torch.uint8).expand(3, new_h, new_w).clone()
    canvas[:, top : top + height, left : left + width] = image
    masks = torch.zeros((target["masks"].shape[0], new_h, new_w), dtype=torch.bool)
    masks[:, top : top + height, left : left + width] = target["masks"]
    target = dict(target, masks=masks)
    offset = torch.tensor([left, top, left, top], dtype=torch.float32)
    for key in ("boxes", "crowd_boxes"):
        if key in target:
            target[key] = target[key] + offset
    return canvas, target


def random_crop(
    image: torch.Tensor, target: Target, rng: np.random.Generator, min_scale: float = 0.3, tries: int = 50
) -> Sample:
    """SSD random crop: a crop of random size and aspect (each side >= ``min_scale``) whose IoU
    with some box is >= a random minimum (or any crop); instances whose box centre falls
    outside the crop are dropped. Returns the input unchanged if no crop qualifies."""
    _, height, width = image.shape
    boxes = target["boxes"]
    min_iou = [None, 0.1, 0.3, 0.5, 0.7, 0.9][int(rng.integers(6))]
    if min_iou is None or len(boxes) == 0:
        return image, target
    for _ in range(tries):
        w, h = float(rng.uniform(min_scale * width, width)), float(rng.uniform(min_scale * height, height))
        if not 0.5 <= h / w <= 2:
            continue
        left, top = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
        crop = torch.tensor([[int(left), int(top), int(left + w), int(top + h)]], dtype=torch.float32)
        if box_iou(boxes, crop).max() < min_iou:
            continue
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        keep = ((centres > crop[:, :2]) & (centres < crop[:, 2:])).all(1)
        if not keep.any():
            continue
        x1, y1, x2, y2 = (int(v) for v in crop[0].tolist())
        cropped = {"labels": target["labels"][keep], "masks": target["masks"][keep][:, y1:y2, x1:x2]}
        if "crowd_boxes" in target:
            crowd = target["crowd_boxes"] - crop[0, :2].repeat(2)
            cropped["crowd_boxes"] = torch.stack(
                [
                    crowd[:, 0].clamp(0, x2 - x1),
                    crowd[:, 1].clamp(0, y2 - y1),
                    crowd[:, 2].clamp(0, x2 - x1),
                    crowd[:, 3].clamp(0, y2 - y1),
                ],
                1,
            )
        cropped["boxes"] = target["boxes"][keep]
        for key in target:
            cropped.setdefault(key, target[key])
        return image[:, y1:y2, x1:x2].contiguous(), boxes_from_masks(cropped)
    return image, target


def boxes_from_masks(target: Target) -> Target:
    """Boxes recomputed as the masks' extents; instances with an empty mask are dropped."""
    masks = target["masks"]
    keep = masks.flatten(1).any(1)
    masks = masks[keep]
    return dict(target, masks=masks, boxes=mask_boxes(masks), labels=target["labels"][keep])


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """float32 [N,4] x1, y1, x2, y2 around non-empty bool masks [N,H,W]; x2, y2 are one past the
    last pixel (torchvision's ``masks_to_boxes`` gives the last pixel itself), so a box's size
    is the mask's extent in pixels."""
    from torchvision.ops import masks_to_boxes

    boxes = masks_to_boxes(masks)
    boxes[:, 2:] += 1
    return boxes


@dataclass(frozen=True)
class Augment:
    """Photometric distortion, expand, random crop and mirror, each switchable; expand and
    crop are applied with probability 1/2 each, mirror with 1/2."""

    photometric: bool = True
    expand: bool = True
    crop: bool = True
    mirror: bool = True
    max_expand: float = 2.0

    def __call__(self, image: torch.Tensor, target: Target, rng: np.random.Generator) -> Sample:
        if self.photometric:
            image = photometric_distort(image, rng)
        if self.expand and rng.random() < 0.5:
            image, target = expand(image, target, rng, self.max_expand)
        if self.crop and rng.random() < 0.5:
            image, target = random_crop(image, target, rng)
        if self.mirror and rng.random() < 0.5:
            image, target = mirror(image, target)
        return image, target
