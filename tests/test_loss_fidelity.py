"""Four details of the official MultiBoxLoss that the loss reproduces: the masks_to_train
rescale, masks_to_train per config, semantic targets downsampled once from
the input size, and mask targets through the input size (the official Resize) first."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from yolact_fast import configs
from yolact_fast.model import Yolact, YolactOutput
from yolact_fast.train import trainer
from yolact_fast.train.loss import LossWeights, mask_loss_single, prepare_targets, yolact_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def _crowded_problem(num_positives, same_coefficients=False, seed=0, num_classes=1):
    """One image, one ground truth [0,0,.5,.5] of class 0 and ``num_positives`` priors equal to
    it (all positive), plus 3 background priors; proto 8x8, k = 3."""
    g = torch.Generator().manual_seed(seed)
    positive = torch.tensor([[0.25, 0.25, 0.5, 0.5]]).repeat(num_positives, 1)
    background = torch.tensor([[0.75, 0.75, 0.2, 0.2], [0.8, 0.2, 0.2, 0.2], [0.2, 0.8, 0.2, 0.2]])
    priors = torch.cat([positive, background])
    p = priors.shape[0]
    coeffs = torch.randn(1, p, 3, generator=g)
    if same_coefficients:
        coeffs[:] = coeffs[0, 0]
    outputs = YolactOutput(
        torch.randn(1, p, 4, generator=g),
        torch.randn(1, p, num_classes + 1, generator=g),
        coeffs,
        torch.rand(1, 8, 8, 3, generator=g),
    )
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[0, 1:7, 2:8] = True
    target = {"boxes": torch.tensor([[0.0, 0.0, 8.0, 8.0]]), "labels": torch.tensor([0]), "masks": masks}
    return outputs, priors, prepare_targets([target], (16, 16), (8, 8))


def _mask_loss(outputs, priors, targets, masks_to_train, seed=0):
    weights = LossWeights(masks_to_train=masks_to_train)
    semantic = torch.zeros(1, 1, 4, 4)
    generator = torch.Generator().manual_seed(seed)
    return yolact_loss(outputs, semantic, priors, targets, weights, generator=generator)["mask"]


def test_crowded_image_keeps_its_mask_weight():
    # identical positives: a subset of 3 of 10, scaled by 10/3, is the loss of all 10
    outputs, priors, targets = _crowded_problem(10, same_coefficients=True)
    full = _mask_loss(outputs, priors, targets, 100)
    subset = _mask_loss(outputs, priors, targets, 3)
    assert full > 0
    assert torch.allclose(subset, full, rtol=1e-6)  # without the rescale it would be 0.3 * full


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crowded_image_subset_by_hand(seed):
    outputs, priors, targets = _crowded_problem(10, seed=seed)
    chosen = torch.randperm(10, generator=torch.Generator().manual_seed(seed))[:4]
    _, _, coeffs, proto = outputs
    t = targets[0]
    per_mask = [mask_loss_single(proto[0], coeffs[0, [i]], t["boxes"], t["masks"]) for i in chosen.tolist()]
    # the 10 positives of the batch divide; the image's subset is scaled by 10 / 4
    expected = sum(per_mask) * (10 / 4) * 6.125 / 10
    assert torch.allclose(_mask_loss(outputs, priors, targets, 4, seed), expected, rtol=1e-6)


def test_masks_to_train_is_a_config_setting():
    assert configs.yolact_im700.masks_to_train == 300
    for name in ("yolact_base", "yolact_resnet50", "yolact_darknet53", "yolact_demo"):
        assert configs.get_config(name).masks_to_train == 100, name
    assert LossWeights().masks_to_train is None
    assert LossWeights().for_config(configs.yolact_im700).masks_to_train == 300
    assert LossWeights(masks_to_train=7).for_config(configs.yolact_im700).masks_to_train == 7
    assert LossWeights(box=2.0).for_config(configs.yolact_base) == LossWeights(box=2.0, masks_to_train=100)


def test_im700_trains_300_masks_per_image():
    outputs, priors, targets = _crowded_problem(300)
    im700 = LossWeights().for_config(configs.yolact_im700)
    base = LossWeights().for_config(configs.yolact_base)
    semantic = torch.zeros(1, 1, 4, 4)

    def mask(weights, seed):
        generator = torch.Generator().manual_seed(seed)
        return yolact_loss(outputs, semantic, priors, targets, weights, generator=generator)["mask"]

    _, _, coeffs, proto = outputs
    t = targets[0]
    every_mask = mask_loss_single(proto[0], coeffs[0, :300], t["boxes"].expand(300, 4), t["masks"].expand(300, 8, 8))
    assert torch.allclose(mask(im700, 0), every_mask * 6.125 / 300, rtol=1e-5)
    assert torch.equal(mask(im700, 0), mask(im700, 1))  # no subset drawn
    assert not torch.equal(mask(base, 0), mask(base, 1))  # 100 of 300 drawn at random


def test_unresolved_weights_are_refused():
    outputs, priors, targets = _crowded_problem(2)
    with pytest.raises(ValueError, match=r"masks_to_train.*for_config"):
        yolact_loss(outputs, torch.zeros(1, 1, 4, 4), priors, targets, LossWeights())


def test_semantic_targets_must_match_the_logits():
    outputs, priors, targets = _crowded_problem(2)
    weights = LossWeights().for_config(configs.yolact_base)
    yolact_loss(outputs, torch.zeros(1, 1, 4, 4), priors, targets, weights)  # 4x4 targets: fine
    with pytest.raises(ValueError, match=r"semantic_masks must be \[M,2,2\].*got \[1, 4, 4\]"):
        yolact_loss(outputs, torch.zeros(1, 1, 2, 2), priors, targets, weights)  # not downsampled again
    without = [{k: v for k, v in t.items() if k != "semantic_masks"} for t in targets]
    with pytest.raises(ValueError, match=r"targets \[0\] have no 'semantic_masks'.*prepare_targets"):
        yolact_loss(outputs, torch.zeros(1, 1, 4, 4), priors, without, weights)


def test_weights_unset_for_a_config_without_the_setting_are_refused():
    with pytest.raises(ValueError, match=r"\['box'\] are None.*no value for them"):
        LossWeights(box=None).for_config(configs.yolact_base)


def test_training_step_takes_masks_to_train_from_the_model_config(monkeypatch):
    config = configs.yolact_demo.replace(
        backbone=configs.BackboneConfig("resnet_basic", (1, 1, 1, 1), (1, 2, 3), (8, 16, 32, 64), width=8),
        max_size=64,
        fpn_features=16,
        proto_width=16,
        mask_dim=8,
        masks_to_train=300,
    )
    seen = []

    def spy(outputs, semantic, priors, targets, weights, *args, **kwargs):
        seen.append(weights.masks_to_train)
        return {"total": torch.zeros(())}

    monkeypatch.setattr(trainer, "yolact_loss", spy)
    model = Yolact(config).train()
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, 10:30, 10:30] = True
    sample = (
        torch.zeros(3, 64, 64, dtype=torch.uint8),
        {"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0]]), "labels": torch.tensor([0]), "masks": masks},
    )
    images, targets = trainer.make_batch([sample], config)
    priors = torch.zeros(1, 4)
    trainer.training_step(model, images, targets, priors)
    trainer.training_step(model, images, targets, priors, LossWeights(masks_to_train=5))
    assert seen == [300, 5]


# --- mask targets: the official path, checked against an OpenCV-style bilinear in numpy ---


def _bilinear_matrix(out_size, in_size):
    """[out, in] weights of OpenCV INTER_LINEAR (half-pixel centres, edges clamped)."""
    weights = np.zeros((out_size, in_size))
    scale = in_size / out_size
    for d in range(out_size):
        f = (d + 0.5) * scale - 0.5
        s = int(np.floor(f))
        f -= s
        if s < 0:
            s, f = 0, 0.0
        if s >= in_size - 1:
            s, f = in_size - 1, 0.0
        weights[d, s] += 1 - f
        weights[d, min(s + 1, in_size - 1)] += f
    return weights


def _resize(mask, size):
    """float64 [H,W] -> [h,w], bilinear as OpenCV."""
    return _bilinear_matrix(size[0], mask.shape[0]) @ mask @ _bilinear_matrix(size[1], mask.shape[1]).T


def _official_mask_target(mask, input_size, out_size):
    """The official path: cv2.resize of the uint8 mask to the input size (round half up), then
    the loss's bilinear downsampling and > 0.5."""
    at_input = (_resize(mask.astype(np.float64), input_size) >= 0.5).astype(np.float64)
    return _resize(at_input, out_size) > 0.5


def _blob_masks(rng, height, width, count):
    """bool [count,H,W]: random ellipses, some small."""
    yy, xx = np.mgrid[0:height, 0:width]
    masks = []
    for _ in range(count):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(1.5, height / 3), rng.uniform(1.5, width / 3)
        masks.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)
    return np.stack(masks)


def _target(masks):
    masks = torch.from_numpy(masks)
    boxes = torch.tensor([[0.0, 0.0, masks.shape[2], masks.shape[1]]]).repeat(len(masks), 1)
    return {"boxes": boxes, "labels": torch.zeros(len(masks), dtype=torch.int64), "masks": masks}


# Original sizes (H, W) whose ratios to 64 are dyadic, so that float32 and float64 agree exactly.
_NON_SQUARE = [(40, 100), (100, 40), (48, 72), (24, 120), (80, 36)]


@pytest.mark.parametrize("size", _NON_SQUARE)
def test_mask_targets_follow_the_official_two_step_path(size):
    rng = np.random.default_rng(size)
    masks = _blob_masks(rng, *size, 12)
    prepared = prepare_targets([_target(masks)], (64, 64), (16, 16), (8, 8))[0]
    expected = np.stack([_official_mask_target(m, (64, 64), (16, 16)) for m in masks])
    assert prepared["masks"].dtype == torch.float32
    assert np.array_equal(prepared["masks"].numpy().astype(bool), expected)
    expected_semantic = np.stack([_official_mask_target(m, (64, 64), (8, 8)) for m in masks])
    assert np.array_equal(prepared["semantic_masks"].numpy().astype(bool), expected_semantic)


def test_direct_resize_differs_from_the_official_path():
    """The sizes above discriminate: straight from the original size to proto size differs."""
    differs = 0
    for size in _NON_SQUARE:
        for mask in _blob_masks(np.random.default_rng(size), *size, 12):
            direct = _resize(mask.astype(np.float64), (16, 16)) > 0.5
            differs += int(not np.array_equal(direct, _official_mask_target(mask, (64, 64), (16, 16))))
    assert differs >= 5


def test_semantic_target_of_a_small_object_keeps_its_edge():
    # A 9x9 px object at [4, 13) of a 64x64 input. Once from 64 to the 8x8 P3 grid, P3 pixel 1
    # samples input pixels 11 and 12 (inside): kept. Through the 16x16 proto grid, proto pixels
    # 1 and 2 are set, and P3 pixel 1 averages proto pixels 2 and 3 (one in): lost entirely.
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, 4:13, 4:13] = True
    target = {"boxes": torch.tensor([[4.0, 4.0, 13.0, 13.0]]), "labels": torch.tensor([2]), "masks": masks}
    prepared = prepare_targets([target], (64, 64), (16, 16), (8, 8))[0]
    expected = torch.zeros(1, 8, 8)
    expected[0, 1, 1] = 1
    assert torch.equal(prepared["semantic_masks"], expected)
    proto = torch.zeros(1, 16, 16)
    proto[0, 1:3, 1:3] = 1
    assert torch.equal(prepared["masks"], proto)
    assert F.interpolate(proto[None], (8, 8), mode="bilinear", align_corners=False).max() <= 0.5

    # the loss trains that target: class 2's logits against it, every other class all zero
    logits = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    outputs, priors, _ = _crowded_problem(1, num_classes=3)
    outputs = outputs._replace(proto=torch.rand(1, 16, 16, 3))
    losses = yolact_loss(outputs, logits, priors, [prepared])
    semantic_target = torch.zeros(3, 8, 8)
    semantic_target[2, 1, 1] = 1
    expected_loss = F.binary_cross_entropy_with_logits(logits[0], semantic_target, reduction="sum") / 64
    assert torch.allclose(losses["semantic"], expected_loss)


def test_trainer_builds_semantic_targets_at_the_p3_size():
    rng = np.random.default_rng(3)
    masks = _blob_masks(rng, 64, 64, 6)
    image = torch.zeros(3, 64, 64, dtype=torch.uint8)
    config = configs.yolact_demo.replace(max_size=64)
    _, (prepared,) = trainer.make_batch([(image, _target(masks))], config)
    assert prepared["semantic_masks"].shape == (6, 8, 8) and prepared["masks"].shape == (6, 16, 16)
    expected = np.stack([_resize(m.astype(np.float64), (8, 8)) > 0.5 for m in masks])
    assert np.array_equal(prepared["semantic_masks"].numpy().astype(bool), expected)
