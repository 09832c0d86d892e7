"""Loss terms against hand-computed values; matching; OHEM; gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from yolact_fast import reference
from yolact_fast.ops.boxes import box_iou, point_form
from yolact_fast.model import YolactOutput
from yolact_fast.train.loss import (
    LossWeights,
    encode,
    mask_loss_single,
    match,
    ohem_negatives,
    prepare_targets,
    semantic_loss_single,
    yolact_loss,
)


def test_encode_inverts_decode():
    g = torch.Generator().manual_seed(0)
    priors = torch.cat([torch.rand(50, 2, generator=g), torch.rand(50, 2, generator=g) * 0.5 + 0.05], 1)
    loc = torch.randn(50, 4, generator=g)
    boxes = reference.decode_boxes(loc, priors)
    assert torch.allclose(encode(boxes, priors), loc, atol=1e-4)


def test_encode_hand_values():
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    box = torch.tensor([[0.42, 0.3, 0.62, 0.9]])  # centre (0.52, 0.6), size (0.2, 0.6)
    expected = [0.02 / (0.1 * 0.2), 0.1 / (0.1 * 0.4), 0.0, math.log(0.6 / 0.4) / 0.2]
    assert torch.allclose(encode(box, prior)[0], torch.tensor(expected), atol=1e-5)


def test_point_form_and_iou():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    assert torch.allclose(point_form(priors), torch.tensor([[0.4, 0.3, 0.6, 0.7]]))
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 7, 1.0]]))


def _priors(boxes):
    """(cx, cy, w, h) from x1,y1,x2,y2."""
    boxes = torch.tensor(boxes)
    return torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)


def test_match_thresholds_and_forced_best_prior():
    # IoU with the ground truth [0,0,.4,.4]: 1.0, 0.45 (neutral), 0.3 (background), 0
    priors = _priors([[0, 0, 0.4, 0.4], [0, 0, 0.4, 0.18], [0, 0, 0.4, 0.12], [0.6, 0.6, 0.9, 0.9]])
    gt = torch.tensor([[0.0, 0.0, 0.4, 0.4]])
    m = match(gt, torch.tensor([2]), priors)
    assert m.conf.tolist() == [3, -1, 0, 0]
    assert torch.allclose(m.loc[0], torch.zeros(4), atol=1e-6)
    # a ground truth whose best IoU is 0.3 still gets that prior as a positive
    gt2 = torch.tensor([[0.6, 0.6, 0.9, 0.9], [0.0, 0.0, 0.4, 1.0]])
    m2 = match(gt2, torch.tensor([0, 1]), priors[[3, 2]])
    assert m2.conf.tolist() == [1, 2] and m2.index.tolist() == [0, 1]


def test_match_crowd_and_empty():
    priors = _priors([[0, 0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7], [0.55, 0.55, 0.65, 0.65]])
    gt = torch.tensor([[0.0, 0.0, 0.2, 0.2]])
    crowd = torch.tensor([[0.5, 0.5, 0.68, 0.68]])  # covers prior 2 fully, prior 1 for 0.81
    m = match(gt, torch.tensor([0]), priors, crowd_boxes=crowd)
    assert m.conf.tolist() == [1, -1, -1]
    m = match(gt, torch.tensor([0]), priors, crowd_boxes=crowd, crowd_iou=0.9)
    assert m.conf.tolist() == [1, 0, -1]
    empty = match(torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64), priors)
    assert empty.conf.tolist() == [0, 0, 0] and empty.loc.abs().sum() == 0


def test_ohem_picks_hardest_negatives_3_to_1():
    # background loss = logsumexp - logit0; bigger class-1 logit -> harder negative
    logits = torch.zeros(1, 8, 2)
    logits[0, :, 1] = torch.tensor([5.0, 0.1, 3.0, 2.0, 4.0, 1.0, 9.0, 0.5])
    conf_t = torch.tensor([[1, 0, 0, 0, 0, 0, -1, 0]])
    neg = ohem_negatives(logits, conf_t)
    assert neg[0].nonzero().squeeze(1).tolist() == [2, 3, 4]  # not 0 (positive) nor 6 (neutral)


def test_mask_loss_hand_value():
    # proto 4x4, k = 1, coefficient 1: prediction sigmoid(proto); box covers the top-left 2x2
    proto = torch.zeros(4, 4, 1)
    proto[0, 0, 0] = 2.0
    coeffs = torch.ones(1, 1)
    box = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    gt = torch.zeros(1, 4, 4)
    gt[0, 0, 0] = 1.0
    # crop padding 1 widens the box to 3x3 proto pixels; outside it the prediction is 0
    s2, s0 = torch.sigmoid(torch.tensor(2.0)), torch.sigmoid(torch.tensor(0.0))
    expected = (-torch.log(s2) - 8 * torch.log(1 - s0)) / (2 * 2)
    assert torch.allclose(mask_loss_single(proto, coeffs, box, gt), expected)


def test_semantic_loss_hand_value():
    logits = torch.tensor([[[0.0, 1.0], [2.0, -1.0]], [[0.5, 0.5], [0.5, 0.5]]])  # [C=2, 2, 2]
    masks = torch.zeros(1, 2, 2)
    masks[0, 0, 0] = 1  # class 1 in the top-left cell
    target = torch.zeros(2, 2, 2)
    target[1, 0, 0] = 1
    expected = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / 4
    assert torch.allclose(semantic_loss_single(logits, masks, torch.tensor([1])), expected)
    # by hand for the first element of class 1: -log(sigmoid(0.5))
    manual = (
        sum(
            -(t * math.log(1 / (1 + math.exp(-x))) + (1 - t) * math.log(1 - 1 / (1 + math.exp(-x))))
            for x, t in zip(logits.flatten().tolist(), target.flatten().tolist())
        )
        / 4
    )
    assert math.isclose(float(expected), manual, rel_tol=1e-5)


def _tiny_problem():
    priors = _priors([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1], [0, 0.5, 0.5, 1], [0.5, 0, 1, 0.5]])
    g = torch.Generator().manual_seed(1)
    outputs = YolactOutput(
        torch.randn(1, 4, 4, generator=g),
        torch.randn(1, 4, 3, generator=g),
        torch.tanh(torch.randn(1, 4, 2, generator=g)),
        torch.rand(1, 4, 4, 2, generator=g),
    )
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, :4, :4] = True
    target = {"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "labels": torch.tensor([1]), "masks": masks}
    return outputs, priors, prepare_targets([target], (8, 8), (4, 4))


def test_total_loss_hand_computed():
    outputs, priors, targets = _tiny_problem()
    semantic = torch.zeros(1, 2, 2, 2)
    losses = yolact_loss(outputs, semantic, priors, targets)
    loc, conf, coeffs, proto = (t[0] for t in outputs)
    # prior 0 matches exactly (offsets 0); the other three are negatives, OHEM keeps all 3
    box = F.smooth_l1_loss(loc[0], torch.zeros(4), reduction="sum") * 1.5
    ce = F.cross_entropy(conf, torch.tensor([2, 0, 0, 0]), reduction="sum")
    gt_mask = torch.zeros(4, 4)
    gt_mask[:2, :2] = 1
    pred = torch.sigmoid(proto @ coeffs[0])
    inside = torch.zeros(4, 4)
    inside[:3, :3] = 1  # box [0,2) x [0,2) plus padding 1
    pred = pred * inside
    bce = F.binary_cross_entropy(pred, gt_mask, reduction="sum")
    mask = bce / 4 * 6.125
    sem_target = torch.zeros(2, 2, 2)
    sem_target[1, 0, 0] = 1
    sem = F.binary_cross_entropy_with_logits(torch.zeros(2, 2, 2), sem_target, reduction="sum") / 4
    assert torch.allclose(losses["box"], box)
    assert torch.allclose(losses["conf"], ce)
    assert torch.allclose(losses["mask"], mask)
    assert torch.allclose(losses["semantic"], sem)
    assert torch.allclose(losses["total"], box + ce + mask + sem)


def test_loss_is_differentiable_in_every_output():
    outputs, priors, targets = _tiny_problem()
    outputs = YolactOutput(*(t.clone().requires_grad_() for t in outputs))
    semantic = torch.zeros(1, 2, 2, 2, requires_grad=True)
    yolact_loss(outputs, semantic, priors, targets)["total"].backward()
    for t in (*outputs, semantic):
        assert t.grad is not None and t.grad.abs().sum() > 0


def test_no_ground_truth_gives_finite_loss():
    outputs, priors, _ = _tiny_problem()
    empty = prepare_targets(
        [
            {
                "boxes": torch.zeros(0, 4),
                "labels": torch.zeros(0, dtype=torch.int64),
                "masks": torch.zeros(0, 8, 8, dtype=torch.bool),
            }
        ],
        (8, 8),
        (4, 4),
    )
    losses = yolact_loss(outputs, torch.zeros(1, 2, 2, 2), priors, empty)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["box"] == 0 and losses["mask"] == 0


def test_masks_to_train_limits_mask_terms():
    outputs, priors, targets = _tiny_problem()
    full = yolact_loss(outputs, torch.zeros(1, 2, 2, 2), priors, targets)["mask"]
    none = yolact_loss(outputs, torch.zeros(1, 2, 2, 2), priors, targets, LossWeights(masks_to_train=0))["mask"]
    assert full > 0 and none == 0


@pytest.mark.parametrize("pos_iou,expected", [(0.5, 1), (0.99, 1)])
def test_forced_match_survives_high_threshold(pos_iou, expected):
    priors = _priors([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]])
    gt = torch.tensor([[0.0, 0.0, 0.4, 0.4]])
    conf = match(gt, torch.tensor([0]), priors, pos_iou=pos_iou, neg_iou=0.4).conf
    assert int((conf > 0).sum()) == expected
