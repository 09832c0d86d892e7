"""The YOLACT training loss (Bolya et al. 2019), as in the official ``MultiBoxLoss``.

- Prior matching: IoU >= ``pos_iou`` positive, < ``neg_iou`` background, in between neutral;
  every ground truth also claims its best prior; background priors lying mostly inside a
  crowd region (intersection / prior area > ``crowd_iou``) become neutral.
- Box loss: smooth L1 on the encoded offsets (:func:`encode` inverts ``decode_boxes``).
- Confidence loss: softmax cross entropy on positives and the hardest negatives (OHEM, 3:1).
- Mask loss: BCE of the assembled mask (sigmoid(proto @ coeffs), cropped to the ground-truth
  box) against the ground truth at proto resolution, summed per mask and divided by the box
  area in proto pixels. An image with more than ``masks_to_train`` positives trains a random
  subset of them, its mask loss scaled by (positives / ``masks_to_train``).
- Mask-IoU loss (YOLACT++ models, which have a ``maskiou_net``): smooth L1 between the
  predicted IoU of each trained mask (``maskiou_net`` on the cropped mask, gathered by class)
  and its actual IoU: the mask thresholded at 0.5 against the ground truth, at proto
  resolution; masks of ground truths of at most ``discard_mask_area`` proto pixels are left out.
- Semantic segmentation loss: BCE with logits of ``semantic_seg_conv(P3)`` against per-class
  masks downsampled to P3, averaged over pixels.

Box, confidence, mask and mask-IoU losses are divided by the number of positives in the batch; the
semantic loss by the batch size (as the official code). Ground-truth masks take the official
path (:func:`prepare_targets`): original size -> network input size -> proto size, and input
size -> P3 size for the semantic targets.

Two deliberate differences from the official code: the mask loss divides by
``max(box area, 1)`` in proto pixels (the official divides by the raw area, a weight up to
1/area for boxes smaller than one proto pixel), and an image without ground truth trains as all
background (the official data loader never yields one).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .. import ops
from ..ops.boxes import box_convert, box_ioa, box_iou, point_form
from ..configs import YolactConfig, yolact_base

Target = Dict[str, torch.Tensor]


def encode(matched: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = (0.1, 0.2)) -> torch.Tensor:
    """Boxes [P,4] x1,y1,x2,y2 relative and their priors [P,4] -> offsets [P,4], such that
    ``decode_boxes(encode(b, p), p) == b`` (up to rounding)."""
    centre, size = box_convert(matched, "xyxy", "cxcywh").split(2, dim=1)
    offset_xy = (centre - priors[:, :2]) / (variances[0] * priors[:, 2:])
    offset_wh = torch.log(size / priors[:, 2:]) / variances[1]
    return torch.cat([offset_xy, offset_wh], 1)


class Matches(NamedTuple):
    """Per prior: ``conf`` int64 [P] (class + 1, 0 background, -1 neutral), ``loc`` [P,4]
    encoded targets, ``index`` int64 [P] of the matched ground truth."""

    conf: torch.Tensor
    loc: torch.Tensor
    index: torch.Tensor


def match(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    priors: torch.Tensor,
    pos_iou: float = 0.5,
    neg_iou: float = 0.4,
    crowd_boxes: torch.Tensor = None,
    crowd_iou: float = 0.7,
    variances: Sequence[float] = (0.1, 0.2),
) -> Matches:
    """Match ground truth (``boxes`` [M,4] relative x1,y1,x2,y2, ``labels`` [M] 0-based) to
    ``priors`` [P,4] (cx,cy,w,h)."""
    num_priors = priors.shape[0]
    device = priors.device
    if boxes.shape[0] == 0:
        return Matches(
            torch.zeros(num_priors, dtype=torch.int64, device=device),
            torch.zeros((num_priors, 4), device=device),
            torch.zeros(num_priors, dtype=torch.int64, device=device),
        )
    overlaps = box_iou(boxes, point_form(priors))  # [M,P]
    best_overlap, best_index = overlaps.max(0)
    # Each ground truth claims its best prior, greedily from the best pair down (official).
    overlaps = overlaps.clone()
    for _ in range(boxes.shape[0]):
        best_prior_overlap, best_prior = overlaps.max(1)
        gt = int(best_prior_overlap.argmax())
        prior = int(best_prior[gt])
        overlaps[:, prior] = -1
        overlaps[gt, :] = -1
        best_overlap[prior] = 2
        best_index[prior] = gt
    conf = labels[best_index] + 1
    conf[best_overlap < pos_iou] = -1
    conf[best_overlap < neg_iou] = 0
    if crowd_boxes is not None and crowd_boxes.shape[0]:
        crowd_overlap = box_ioa(point_form(priors), crowd_boxes).max(1).values
        conf[(conf <= 0) & (crowd_overlap > crowd_iou)] = -1
    loc = encode(boxes[best_index], priors, variances)
    return Matches(conf, loc, best_index)


def ohem_negatives(conf_logits: torch.Tensor, conf_t: torch.Tensor, negpos_ratio: int = 3) -> torch.Tensor:
    """bool [B,P]: for each image the ``negpos_ratio`` x (positives) background priors with the
    highest background loss (``logsumexp - logit_0``); positives and neutrals never count."""
    with torch.no_grad():
        background_loss = torch.logsumexp(conf_logits, -1) - conf_logits[..., 0]
        background_loss[conf_t != 0] = 0
        order = background_loss.argsort(1, descending=True)
        rank = order.argsort(1)
        num_pos = (conf_t > 0).sum(1, keepdim=True)
        num_neg = torch.clamp(negpos_ratio * num_pos, max=conf_t.shape[1] - 1)
        return (rank < num_neg) & (conf_t == 0)


def mask_loss_single(
    proto: torch.Tensor, coeffs: torch.Tensor, gt_boxes: torch.Tensor, gt_masks: torch.Tensor
) -> torch.Tensor:
    """Sum over masks of (BCE summed over the cropped mask) / (box area in proto pixels).

    proto [h,w,k], coeffs [n,k], gt_boxes [n,4] relative, gt_masks [n,h,w] float in {0,1}.
    """
    h, w, _ = proto.shape
    pred = ops.assemble_masks(proto, coeffs, gt_boxes).clamp(0, 1)
    bce = F.binary_cross_entropy(pred, gt_masks, reduction="none").sum((1, 2))
    area = ((gt_boxes[:, 2] - gt_boxes[:, 0]) * w) * ((gt_boxes[:, 3] - gt_boxes[:, 1]) * h)
    return (bce / area.clamp(min=1)).sum()


def downsample_masks(masks: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """float [M,H,W] in {0,1} -> float [M,h,w] in {0,1}: bilinear (no antialias) then > 0.5,
    as the official loss downsamples its targets."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *size))
    return (_bilinear(masks, size) > 0.5).to(masks.dtype)


def _bilinear(masks: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    return F.interpolate(masks[None], size, mode="bilinear", align_corners=False)[0]


def semantic_loss_single(logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits [C,h,w], masks [M,h,w] float in {0,1} (already at the logits' size, see
    :func:`prepare_targets`), labels [M] -> mean BCE with logits over pixels of per-class
    targets (the union of each class's masks)."""
    num_classes, h, w = logits.shape
    if masks.shape[-2:] != (h, w):
        raise ValueError(
            f"semantic_masks must be [M,{h},{w}] (the semantic logits' size), got "
            f"{list(masks.shape)}: build them with prepare_targets(..., semantic_size=({h}, {w}))"
        )
    target = torch.zeros_like(logits)
    if masks.shape[0]:
        masks = masks.bool()
        for label in labels.unique():
            target[label] = masks[labels == label].any(0).float()
    return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / (h * w)


def maskiou_samples(
    proto: torch.Tensor,
    coeffs: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_masks: torch.Tensor,
    gt_labels: torch.Tensor,
    discard_mask_area: float,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask-IoU training samples of one image's trained masks: (``maskiou_net`` input
    [n,1,h,w], the cropped predicted masks; target IoU [n] of each mask thresholded at 0.5 with
    its ground truth; labels [n]). proto [h,w,k], coeffs [m,k], gt_boxes [m,4] relative,
    gt_masks [m,h,w] in {0,1}, gt_labels [m]; ground truths of at most ``discard_mask_area``
    pixels are left out (official ``discard_mask_area``)."""
    keep = gt_masks.sum((1, 2)) > discard_mask_area
    pred = ops.assemble_masks(proto, coeffs[keep], gt_boxes[keep])
    with torch.no_grad():
        binary, gt = (pred > 0.5).float(), gt_masks[keep]
        intersection = (binary * gt).sum((1, 2))
        target = intersection / (binary.sum((1, 2)) + gt.sum((1, 2)) - intersection)
    return pred.unsqueeze(1), target, gt_labels[keep]


def mask_iou_loss(
    maskiou_net: torch.nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor,
    labels: torch.Tensor,
    maskious_to_train: int = -1,
    generator: torch.Generator = None,
) -> torch.Tensor:
    """Summed smooth L1 between ``maskiou_net(inputs)`` [n,C] gathered at ``labels`` [n] and
    ``target`` [n]; a random ``maskious_to_train`` of the samples if positive and exceeded."""
    if maskious_to_train > 0 and inputs.shape[0] > maskious_to_train:
        keep = torch.randperm(inputs.shape[0], generator=generator)[:maskious_to_train].to(inputs.device)
        inputs, target, labels = inputs[keep], target[keep], labels[keep]
    predicted = maskiou_net(inputs).gather(1, labels.view(-1, 1)).squeeze(1)
    return F.smooth_l1_loss(predicted, target, reduction="sum")


@dataclass(frozen=True)
class LossWeights:
    """Official YOLACT hyper-parameters. A field left None takes the model config's value of
    the same name (:meth:`for_config`); ``masks_to_train`` is per config (100, 300 for
    yolact_im700). ``maskiou``, ``discard_mask_area``, ``maskious_to_train``: YOLACT++'s
    ``maskiou_alpha`` and its other mask-IoU settings."""

    pos_iou: float = 0.5
    neg_iou: float = 0.4
    crowd_iou: float = 0.7
    negpos_ratio: int = 3
    box: float = 1.5
    conf: float = 1.0
    mask: float = 6.125
    semantic: float = 1.0
    masks_to_train: Optional[int] = None
    maskiou: float = 25.0
    discard_mask_area: float = 25.0
    maskious_to_train: int = -1

    def for_config(self, config: YolactConfig) -> "LossWeights":
        """These weights with every None field set from ``config``; ValueError for a None
        field the config has no value for."""
        unset = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is None]
        missing = [name for name in unset if getattr(config, name, None) is None]
        if missing:
            raise ValueError(
                f"LossWeights fields {missing} are None (take the config's value), but config "
                f"{config.name!r} has no value for them: set them in LossWeights"
            )
        return dataclasses.replace(self, **{name: getattr(config, name) for name in unset})


def resize_to_input(masks: torch.Tensor, input_size: Tuple[int, int]) -> torch.Tensor:
    """bool/float [M,H,W] at the original image size -> float [M,S,S'] in {0,1} at the network
    input size: bilinear, rounded half up, as the official ``Resize`` augmentation resizes uint8
    masks with OpenCV (equal up to OpenCV's fixed-point rounding of near-ties)."""
    masks = masks.float()
    if masks.shape[-2:] == tuple(input_size):
        return masks
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *input_size))
    return (_bilinear(masks, input_size) >= 0.5).float()


def prepare_targets(
    targets: Sequence[Target],
    input_size: Tuple[int, int],
    proto_size: Tuple[int, int],
    semantic_size: Optional[Tuple[int, int]] = None,
) -> List[Target]:
    """Pixel targets of images resized to ``input_size`` -> relative boxes, masks at proto size.

    Each target's masks [M,H,W] give the original image size H, W. As in the official
    pipeline they are resized to ``input_size`` first (:func:`resize_to_input`), then
    downsampled once to ``proto_size`` (mask loss) and once to ``semantic_size`` (the P3 size
    of the semantic loss; default half ``proto_size``, as the protonet upsamples P3 x2) with
    :func:`downsample_masks`. The result holds ``boxes`` and ``crowd_boxes`` relative to H, W,
    ``labels``, ``masks`` float [M,ph,pw] and ``semantic_masks`` float [M,sh,sw] in {0,1}.
    """
    if semantic_size is None:
        semantic_size = (proto_size[0] // 2, proto_size[1] // 2)
    prepared = []
    for target in targets:
        masks = target["masks"]
        height, width = masks.shape[-2:]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        input_masks = resize_to_input(masks, input_size)
        prepared.append(
            {
                "boxes": target["boxes"].float() / scale,
                "labels": target["labels"],
                "masks": downsample_masks(input_masks, proto_size),
                "semantic_masks": downsample_masks(input_masks, semantic_size),
                "crowd_boxes": target.get("crowd_boxes", torch.zeros((0, 4))).float() / scale,
            }
        )
    return prepared


def yolact_loss(
    outputs,
    semantic_logits: torch.Tensor,
    priors: torch.Tensor,
    targets: Sequence[Target],
    weights: Optional[LossWeights] = None,
    variances: Sequence[float] = (0.1, 0.2),
    generator: torch.Generator = None,
    denominators: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    maskiou_net: Optional[torch.nn.Module] = None,
) -> Dict[str, torch.Tensor]:
    """Losses {"box", "conf", "mask", "semantic", "total"} for a batch, and "maskiou" with a
    ``maskiou_net`` (YOLACT++).

    ``outputs``: :class:`~yolact_fast.model.YolactOutput` (loc [B,P,4], conf_logits [B,P,C],
    mask_coeffs [B,P,k], proto [B,h,w,k]); ``semantic_logits`` [B,C-1,h3,w3]; ``priors`` [P,4];
    ``targets``: per image ``boxes`` [M,4] relative, ``labels`` [M], ``masks`` [M,h,w] at proto
    resolution, ``semantic_masks`` [M,h3,w3] (see :func:`prepare_targets`), optional
    ``crowd_boxes`` [K,4] relative. ``weights``: resolved (no None field; default: yolact_base's).
    ``generator`` picks the masks trained when an image has more than ``masks_to_train`` positives.
    ``denominators`` maps this batch's float [positives, images] to the divisors of the terms
    (default: the counts themselves, at least 1); distributed training passes
    :meth:`~yolact_fast.train.distributed.Processes.loss_denominators`.
    """
    weights = LossWeights().for_config(yolact_base) if weights is None else weights
    unset = [f.name for f in dataclasses.fields(weights) if getattr(weights, f.name) is None]
    if unset:
        raise ValueError(
            f"weights fields {unset} are None (take the config's value): pass weights.for_config(model.config)"
        )
    lacking = [i for i, t in enumerate(targets) if "semantic_masks" not in t]
    if lacking:
        raise ValueError(f"targets {lacking} have no 'semantic_masks': build the targets with prepare_targets()")
    loc, conf_logits, coeffs, proto = outputs
    device = loc.device
    matches = [
        match(
            t["boxes"].to(device),
            t["labels"].to(device),
            priors,
            weights.pos_iou,
            weights.neg_iou,
            t.get("crowd_boxes", torch.zeros((0, 4))).to(device),
            weights.crowd_iou,
            variances,
        )
        for t in targets
    ]
    conf_t = torch.stack([m.conf for m in matches])
    loc_t = torch.stack([m.loc for m in matches])
    positive = conf_t > 0
    counts = torch.stack([positive.sum(), torch.tensor(len(targets), device=device)]).float()
    num_pos, num_images = counts.clamp(min=1) if denominators is None else denominators(counts)

    box = F.smooth_l1_loss(loc[positive], loc_t[positive], reduction="sum")
    selected = positive | ohem_negatives(conf_logits, conf_t, weights.negpos_ratio)
    conf = F.cross_entropy(conf_logits[selected], conf_t[selected], reduction="sum")

    mask = loc.new_zeros(())
    maskiou = []
    for i, (target, m) in enumerate(zip(targets, matches)):
        index = positive[i].nonzero().squeeze(1)
        num_positives = index.numel()
        if num_positives == 0 or weights.masks_to_train == 0:
            continue
        if num_positives > weights.masks_to_train:
            keep = torch.randperm(num_positives, generator=generator)[: weights.masks_to_train]
            index = index[keep.to(device)]
        gt = m.index[index]
        image_mask = mask_loss_single(
            proto[i], coeffs[i, index], target["boxes"].to(device)[gt], target["masks"].to(device)[gt]
        )
        # A crowded image trains a subset of its masks but keeps its weight (official).
        mask = mask + image_mask * (num_positives / index.numel())
        if maskiou_net is not None:
            maskiou.append(
                maskiou_samples(
                    proto[i],
                    coeffs[i, index],
                    target["boxes"].to(device)[gt],
                    target["masks"].to(device)[gt],
                    target["labels"].to(device)[gt],
                    weights.discard_mask_area,
                )
            )

    semantic = (
        sum(
            semantic_loss_single(semantic_logits[i], t["semantic_masks"].to(device), t["labels"].to(device))
            for i, t in enumerate(targets)
        )
        / num_images
    )

    losses = {
        "box": box * weights.box / num_pos,
        "conf": conf * weights.conf / num_pos,
        "mask": mask * weights.mask / num_pos,
        "semantic": semantic * weights.semantic,
    }
    if maskiou_net is not None:
        samples = [torch.cat(parts) for parts in zip(*maskiou)] if maskiou else None
        # Without samples the term is 0 through maskiou_net's parameters, so that every process
        # of a distributed run gives them a gradient (DistributedDataParallel needs one).
        loss = (
            mask_iou_loss(maskiou_net, *samples, weights.maskious_to_train, generator)
            if samples is not None and samples[0].shape[0]
            else 0 * sum(p.sum() for p in maskiou_net.parameters())
        )
        losses["maskiou"] = loss * weights.maskiou / num_pos
    losses["total"] = sum(losses.values())
    return losses
