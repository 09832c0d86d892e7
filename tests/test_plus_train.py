"""Training YOLACT++: the mask-IoU loss, gradients through the deformable convs, a tiny run."""

import json

import numpy as np
import pytest
import torch

import yolact_fast as yf
from yolact_fast import configs
from yolact_fast.data import synthetic_shapes
from yolact_fast.train import TrainOptions, train
from yolact_fast.train.loss import LossWeights, mask_iou_loss, maskiou_samples
from yolact_fast.train.trainer import make_batch, training_step

# A small YOLACT++: Bottleneck ResNet with a deformable conv in every stage but the first,
# non-square anchors, a two-layer mask-IoU network (proto 24x24 at 96 px).
TINY_PLUS = configs.yolact_plus_resnet50.replace(
    name="yolact_plus_resnet50",  # a named config, so that the saved weights name it
    backbone=configs.BackboneConfig(
        "resnet", (1, 1, 1, 1), (1, 2, 3), (32, 64, 128, 256), width=8, dcn_layers=(0, 1, 1, 1)
    ),
    class_names=configs.SHAPE_CLASSES,
    max_size=96,
    fpn_features=16,
    proto_width=16,
    mask_dim=8,
    pred_scales=tuple(tuple(s * 2 ** (j / 3) for j in range(3)) for s in (12, 24, 48, 96, 192)),
    maskiou_channels=(8, 16),
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_data():
    return list(synthetic_shapes(4, seed=3, size=(96, 96), max_objects=2, min_size=0.4))


def test_maskiou_samples_targets_and_discard():
    torch.manual_seed(0)
    proto = torch.randn(16, 16, 4)
    coeffs = torch.randn(3, 4)
    boxes = torch.tensor([[0.1, 0.1, 0.9, 0.9], [0.2, 0.2, 0.6, 0.7], [0.0, 0.0, 0.2, 0.2]])
    gt = torch.zeros(3, 16, 16)
    gt[0, 2:14, 2:14] = 1
    gt[1, 4:11, 3:9] = 1
    gt[2, 0:3, 0:3] = 1  # 9 pixels: discarded at discard_mask_area 25
    labels = torch.tensor([2, 0, 1])
    inputs, target, kept = maskiou_samples(proto, coeffs, boxes, gt, labels, 25.0)
    assert inputs.shape == (2, 1, 16, 16) and torch.equal(kept, labels[:2])
    pred = yf.reference.assemble_masks(proto, coeffs[:2], boxes[:2])
    torch.testing.assert_close(inputs[:, 0], pred)
    for i in range(2):
        binary = pred[i] > 0.5
        truth = gt[i] > 0
        expected = (binary & truth).sum() / (binary | truth).sum()
        assert target[i].item() == pytest.approx(expected.item(), rel=1e-6)
    assert 0 < target.min() and target.max() < 1  # the case is not degenerate
    assert maskiou_samples(proto, coeffs, boxes, gt, labels, 1000.0)[0].shape[0] == 0


def test_mask_iou_loss_gathers_by_class_and_subsamples():
    net = yf.model.heads.MaskIoUNet((4,), num_classes=3)
    inputs = torch.rand(5, 1, 9, 9)
    labels = torch.tensor([0, 1, 2, 1, 0])
    target = torch.rand(5)
    predicted = net(inputs)[torch.arange(5), labels]
    expected = torch.nn.functional.smooth_l1_loss(predicted, target, reduction="sum")
    torch.testing.assert_close(mask_iou_loss(net, inputs, target, labels), expected)
    generator = torch.Generator().manual_seed(1)
    sub = mask_iou_loss(net, inputs, target, labels, maskious_to_train=2, generator=generator)
    keep = torch.randperm(5, generator=torch.Generator().manual_seed(1))[:2]
    torch.testing.assert_close(sub, torch.nn.functional.smooth_l1_loss(predicted[keep], target[keep], reduction="sum"))


def test_gradients_reach_deformable_convs_and_maskiou_net(tiny_data):
    torch.manual_seed(0)
    model = yf.Yolact(TINY_PLUS).train()
    images, targets = make_batch(tiny_data, TINY_PLUS)
    priors = yf.reference.make_priors(TINY_PLUS, (96, 96))
    losses = training_step(model, images, targets, priors)
    assert set(losses) == {"box", "conf", "mask", "semantic", "maskiou", "total"}
    assert losses["maskiou"] > 0
    losses["total"].backward()
    deform = [m for m in model.modules() if isinstance(m, yf.model.deform.ModulatedDeformConv2d)]
    assert len(deform) == 3
    for module in deform:
        for tensor in (module.weight, module.bias, module.conv_offset_mask.weight):
            assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    for parameter in model.maskiou_net.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
    assert model.maskiou_net.maskiou_net[-2].weight.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def trained_plus(tmp_path_factory, tiny_data):
    """A 30-step run of TINY_PLUS: (out dir, summary, model); TINY_PLUS stands in for the
    named config while the module runs, so that its weights file loads by name."""
    patch = pytest.MonkeyPatch()
    patch.setattr(configs, "NAMED_CONFIGS", dict(configs.NAMED_CONFIGS, yolact_plus_resnet50=TINY_PLUS))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("plus_run")
    options = TrainOptions(
        epochs=30,
        batch_size=4,
        lr=5e-3,
        warmup_steps=2,
        log_every=1,
        augment=None,
        checkpoint_every=10_000,
        loss=LossWeights(),
    )
    try:
        summary, model = train(TINY_PLUS, tiny_data, str(out), options, progress=False)
    finally:
        torch.set_num_threads(threads)
    yield out, summary, model
    patch.undo()


def test_tiny_plus_training_loss_falls(trained_plus, tiny_data):
    out, summary, model = trained_plus
    log = [json.loads(line) for line in open(out / "loss_log.jsonl")]
    assert summary["steps"] == 30
    first = np.mean([r["total"] for r in log[:5]])
    last = np.mean([r["total"] for r in log[-5:]])
    assert last < 0.7 * first, (first, last)
    assert np.mean([r["mask"] for r in log[-5:]]) < np.mean([r["mask"] for r in log[:5]])
    # The mask-IoU targets move as the masks learn (early masks have IoU near 0), so over 30
    # steps this term need not fall; it must be trained (finite, non-zero) throughout.
    assert all(np.isfinite(r["maskiou"]) for r in log) and np.mean([r["maskiou"] for r in log]) > 0
    loaded = yf.load(summary["weights"])
    assert loaded.config == TINY_PLUS
    inst = yf.segment(tiny_data[0][0], model=loaded)
    assert len(inst) > 0 and torch.equal(inst.scores, inst.scores.sort(descending=True).values)
    assert not torch.equal(inst.scores, inst.box_scores)


def test_cli_segment_and_eval_with_a_plus_model(trained_plus, tiny_data, tmp_path, capsys):
    from yolact_fast.cli import main
    from yolact_fast.visualize import to_pil

    _, summary, _ = trained_plus
    image_path = tmp_path / "shapes.png"
    to_pil(tiny_data[0][0]).save(image_path)
    assert main(["segment", "--weights", summary["weights"], str(image_path), "--out", str(tmp_path / "seg")]) == 0
    assert json.loads((tmp_path / "seg" / "results.json").read_text())["annotations"]
    assert (
        main(["eval", "--weights", summary["weights"], "--data", "synthetic:2:7:96", "--out", str(tmp_path / "eval")])
        == 0
    )
    assert "mask AP" in capsys.readouterr().out
    segm = json.loads((tmp_path / "eval" / "results.json").read_text())
    boxes = json.loads((tmp_path / "eval" / "bbox_results.json").read_text())
    assert len(segm) == len(boxes) > 0 and "segmentation" not in boxes[0]
    assert sorted(r["score"] for r in segm) != sorted(r["score"] for r in boxes)  # re-scored masks
