"""YOLACT++: official layout, priors, deformable convs, mask re-scoring and parity with the
official code on the golden cases (``golden/plus/`` of each golden folder: a file is taken from
the first folder that has it; tests/data/golden/plus holds the subset vendored by
scripts/vendor_plus_golden.py)."""

import hashlib
import json

import numpy as np
import pytest
import torch
from torch import nn

import yolact_fast as yf
from yolact_fast import configs
from yolact_fast.model.checkpoint import infer_config
from yolact_fast.model.deform import ModulatedDeformConv2d
from yolact_fast.model.fuse import fold_batchnorm
from yolact_fast.model.weight_rule import rule_weights, weight_roles
from yolact_fast.rescore import rescore_masks

from comparisons import match_detections
from golden_data import golden_masks, golden_rgb
from golden_data import GOLDEN_DIRS, golden_path, load_golden_json

PLUS_CONFIGS = ["yolact_plus_base", "yolact_plus_resnet50"]
CASES = sorted({p.name for d in GOLDEN_DIRS for p in (d / "plus").glob("golden_yolact_plus_*.npz")})


def plus_file(name):
    """A YOLACT++ golden file from the first golden folder that has it (the shared copy holds
    every array, the vendored one the subset the tests use)."""
    return golden_path(f"plus/{name}")


def manifest(config_name):
    return load_golden_json(f"plus/keys_{config_name}.json")


@pytest.fixture(scope="module", params=CASES or ["<missing>"])
def plus_golden(request):
    if request.param == "<missing>":
        pytest.fail(f"no YOLACT++ golden case in plus/ of {GOLDEN_DIRS}")
    data = dict(np.load(plus_file(request.param)))
    meta = json.loads(str(data.pop("meta")))
    golden = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.items() if v.dtype.kind != "U"}
    golden.update(
        meta=meta,
        image=data.pop("image"),
        priors_raw=data.get("priors"),
        priors_sha256=str(data["priors_sha256"]) if "priors_sha256" in data else None,
    )
    golden["masks"] = golden_masks(golden)
    return golden


@pytest.fixture(scope="module")
def plus_results(plus_golden):
    meta = plus_golden["meta"]
    config = meta["config"].replace("_config", "")
    seed = meta.get("seed", meta.get("weight_seed"))
    model = yf.load(rule_weights(config, seed), config=config)
    image = golden_rgb(plus_golden)
    return model, image, yf.segment(image, model=model)


def expected_in_display_order(golden):
    order = golden["display_order"]
    return {
        "boxes": golden["boxes"][order],
        "scores": golden["mask_scores"][order],
        "box_scores": golden["box_scores"][order],
        "labels": golden["classes"][order],
        "masks": golden["masks"][order],
    }


@pytest.mark.parametrize("config_name", PLUS_CONFIGS)
def test_state_dict_layout_and_roles_equal_official(config_name):
    expected = manifest(config_name)
    with torch.device("meta"):
        state_dict = yf.Yolact(configs.get_config(config_name)).state_dict()
    ours = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in state_dict.items()]
    assert ours == expected["keys"]
    assert weight_roles(k for k, _, _ in expected["keys"]) == expected["weight_rule_roles"]
    assert infer_config(state_dict).name == config_name


@pytest.mark.parametrize(
    "config_name, deformable",
    [
        ("yolact_plus_base", {(1, 0), (1, 3)} | {(2, i) for i in range(0, 23, 3)} | {(3, 0)}),
        ("yolact_plus_resnet50", {(1, i) for i in range(4)} | {(2, i) for i in range(6)} | {(3, i) for i in range(3)}),
    ],
)
def test_deformable_blocks_follow_the_official_rule(config_name, deformable):
    with torch.device("meta"):
        model = yf.Yolact(configs.get_config(config_name))
    found = {
        (s, b)
        for s, stage in enumerate(model.backbone.layers)
        for b, block in enumerate(stage)
        if isinstance(block.conv2, ModulatedDeformConv2d)
    }
    assert found == deformable


def test_priors_equal_official(plus_golden):
    priors = yf.ops.make_priors(configs.yolact_plus_resnet50, (550, 550))
    assert priors.shape == (57744, 4)
    assert torch.equal(priors, yf.reference.make_priors(configs.yolact_plus_resnet50, (550, 550)))
    if plus_golden["priors_raw"] is not None:
        assert torch.equal(priors, torch.from_numpy(plus_golden["priors_raw"]))
    else:
        assert hashlib.sha256(priors.numpy().tobytes()).hexdigest() == plus_golden["priors_sha256"]
    # not square: h = scale / sqrt(ar) / max_size
    w, h = priors[:9, 2].double(), priors[:9, 3].double()
    torch.testing.assert_close(w * h, (w * h)[[0, 0, 0, 3, 3, 3, 6, 6, 6]], rtol=1e-6, atol=0)
    assert not torch.equal(w, h)


def test_golden_parity(plus_golden, plus_results):
    """labels, box and mask scores within 1e-4, boxes within 1 px, masks IoU >= 0.99, 100/100."""
    _, _, inst = plus_results
    expected = expected_in_display_order(plus_golden)
    stats = match_detections(inst, expected)
    print(f"\n{plus_golden['meta']['config']}: {stats}")
    assert len(inst) == 100 and stats["matched_fraction"] == 1.0
    assert stats["max_box_diff"] <= 1.0 and stats["min_mask_iou"] >= 0.99
    assert stats["label_agreement"] == 1.0 and stats["max_score_diff"] <= 1e-4
    torch.testing.assert_close(inst.box_scores, expected["box_scores"], rtol=0, atol=1e-4)
    assert torch.equal(inst.scores, inst.scores.sort(descending=True).values)
    assert not torch.allclose(inst.scores, inst.box_scores)  # re-scored


def test_golden_eager_path(plus_golden, plus_results):
    """The unfused model with the reference ops gives the same detections."""
    model, image, fused = plus_results
    inst = yf.segment_eager(image, model=model)
    expected = expected_in_display_order(plus_golden)
    stats = match_detections(inst, expected)
    assert stats["matched_fraction"] == 1.0 and stats["label_agreement"] == 1.0
    assert stats["max_score_diff"] <= 1e-5 and stats["min_mask_iou"] >= 0.99
    torch.testing.assert_close(inst.box_scores, fused.box_scores, rtol=0, atol=1e-5)


def test_maskiou_equals_official(plus_golden, plus_results):
    _, _, inst = plus_results
    order = plus_golden["display_order"]
    torch.testing.assert_close(inst.scores / inst.box_scores, plus_golden["maskiou"][order], rtol=1e-4, atol=1e-5)


def test_to_coco_scores_boxes_with_box_scores(plus_results):
    _, _, inst = plus_results
    segm = inst[:5].to_coco(3)
    boxes = inst[:5].to_coco(3, iou_type="bbox")
    assert [r["score"] for r in segm] == pytest.approx(inst.scores[:5].tolist())
    assert [r["score"] for r in boxes] == pytest.approx(inst.box_scores[:5].tolist())
    assert all("segmentation" in r for r in segm) and not any("segmentation" in r for r in boxes)
    assert [r["bbox"] for r in segm] == [r["bbox"] for r in boxes]
    with pytest.raises(ValueError, match="iou_type"):
        inst.to_coco(3, iou_type="keypoints")


def test_instances_carry_box_scores(plus_results):
    _, _, inst = plus_results
    picked = inst[torch.tensor([4, 1])]
    assert torch.equal(picked.box_scores, inst.box_scores[[4, 1]])
    assert torch.equal(inst[2].box_scores, inst.box_scores[2:3])
    assert torch.equal(inst.to("cpu").box_scores, inst.box_scores)
    plain = yf.Instances(inst.boxes, inst.scores, inst.labels, inst.masks, inst.class_names)
    assert plain.box_scores is plain.scores  # YOLACT models: box_scores equals scores
    with pytest.raises(ValueError, match="box_scores"):
        yf.Instances(inst.boxes, inst.scores, inst.labels, inst.masks, inst.class_names, inst.box_scores[:3])


def test_rescore_orders_by_mask_score_and_keeps_empty():
    torch.manual_seed(0)
    net = yf.model.heads.MaskIoUNet((4,), num_classes=3)
    proto, coeffs = torch.rand(12, 12, 4), torch.randn(6, 4)
    boxes = torch.tensor([[0.1, 0.1, 0.8, 0.9]]).repeat(6, 1)
    labels = torch.tensor([0, 2, 1, 1, 0, 2])
    box_scores = torch.linspace(0.9, 0.4, 6)
    inst = yf.Instances(torch.zeros(6, 4), box_scores, labels, torch.zeros(6, 5, 5, dtype=torch.bool), ("a", "b", "c"))
    out = rescore_masks(inst, net, proto, coeffs, boxes, yf.reference)
    masks = yf.reference.assemble_masks(proto, coeffs, boxes)
    iou = net(masks[:, None])[torch.arange(6), labels]
    expected = box_scores * iou
    order = expected.argsort(descending=True, stable=True)
    torch.testing.assert_close(out.scores, expected[order])
    assert torch.equal(out.box_scores, box_scores[order]) and torch.equal(out.labels, labels[order])
    assert len(rescore_masks(inst[:0], net, proto, coeffs[:0], boxes[:0], yf.reference)) == 0


def test_maskiou_net_rejects_bad_input():
    net = yf.model.heads.MaskIoUNet((8, 16, 32, 64, 128), num_classes=80)
    assert net(torch.rand(2, 1, 63, 70)).shape == (2, 80)
    with pytest.raises(ValueError, match=r"masks must be \[n,1,h,w\] with h, w >= 63"):
        net(torch.rand(2, 1, 62, 100))
    with pytest.raises(ValueError, match="masks must be"):
        net(torch.rand(2, 3, 100, 100))


def _random_deform(in_channels, out_channels, stride):
    torch.manual_seed(stride)
    conv = ModulatedDeformConv2d(in_channels, out_channels, 3, stride=stride, padding=1)
    with torch.no_grad():
        conv.bias.normal_()
        conv.conv_offset_mask.weight.normal_(0, 0.3)  # offsets of a few pixels, masks != 0.5
        conv.conv_offset_mask.bias.normal_()
    return conv


def _dcn_v2_reference(x, conv):
    """DCNv2 written out (official layout: offset channels 2k, 2k+1 = dy, dx of kernel tap k,
    row-major taps; zero outside the image), by bilinear sampling, float64."""
    x = x.double()
    offset, mask = (t.double() for t in conv.offset_and_mask(x.float()))
    batch, _, height, width = x.shape
    _, _, out_h, out_w = offset.shape
    stride = conv.stride[0]
    rows = torch.arange(out_h, dtype=torch.float64).view(-1, 1) * stride - 1
    cols = torch.arange(out_w, dtype=torch.float64).view(1, -1) * stride - 1
    columns = []
    for tap in range(9):
        ky, kx = divmod(tap, 3)
        y = rows + ky + offset[:, 2 * tap]
        x_pos = cols + kx + offset[:, 2 * tap + 1]
        sampled = torch.zeros(batch, x.shape[1], out_h, out_w, dtype=torch.float64)
        y0, x0 = torch.floor(y), torch.floor(x_pos)
        for dy in (0, 1):
            for dx in (0, 1):
                yy, xx = y0 + dy, x0 + dx
                weight = (1 - (y - yy).abs()) * (1 - (x_pos - xx).abs())
                inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
                index = (yy.clamp(0, height - 1) * width + xx.clamp(0, width - 1)).long()
                values = torch.gather(x.flatten(2), 2, index.flatten(1)[:, None].expand(-1, x.shape[1], -1))
                sampled += values.view_as(sampled) * (weight * inside)[:, None]
        columns.append(sampled * mask[:, tap][:, None])
    columns = torch.stack(columns, 2)  # [B,C,9,h,w]
    weight = conv.weight.double().flatten(2)  # [O,C,9]
    return torch.einsum("bckhw,ock->bohw", columns, weight) + conv.bias.double().view(1, -1, 1, 1)


@pytest.mark.parametrize("stride, size", [(1, (9, 11)), (2, (10, 7))])
def test_modulated_deform_conv_equals_written_out_dcn_v2(stride, size):
    conv = _random_deform(5, 6, stride)
    x = torch.randn(2, 5, *size)
    offset, _ = conv.offset_and_mask(x)
    assert offset.abs().max() > 1  # samples really move
    torch.testing.assert_close(conv(x).double(), _dcn_v2_reference(x, conv), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_batchnorm_folds_into_deformable_conv(stride):
    conv = _random_deform(4, 6, stride)
    bn = nn.BatchNorm2d(6).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
    fused = fold_batchnorm(conv, bn)
    assert isinstance(fused, ModulatedDeformConv2d)
    x = torch.randn(2, 4, 13, 12)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), bn(conv(x)), rtol=1e-5, atol=1e-5)
        assert torch.equal(fused.conv_offset_mask.weight, conv.conv_offset_mask.weight)


@pytest.mark.parametrize(
    "plus_name, plain_name", [("yolact_plus_resnet50", "yolact_resnet50"), ("yolact_plus_base", "yolact_base")]
)
def test_plus_and_plain_checkpoints_mismatch_names_the_implied_config(plus_name, plain_name):
    with torch.device("meta"):
        plus = yf.Yolact(configs.get_config(plus_name)).state_dict()
        plain = yf.Yolact(configs.get_config(plain_name)).state_dict()
    with pytest.raises(RuntimeError, match=rf"(?s)does not match {plain_name}\b.*keys are those of {plus_name}"):
        yf.load(plus, config=plain_name)
    with pytest.raises(RuntimeError, match=rf"(?s)does not match {plus_name}\b.*keys are those of {plain_name}"):
        yf.load(plain, config=plus_name)


def test_plus_checkpoint_file_infers_its_config(tmp_path):
    weights = rule_weights("yolact_plus_resnet50", 1)
    path = tmp_path / "yolact_plus_resnet50_54_800000.pth"
    torch.save(weights, path)
    model = yf.load(str(path))
    assert model.config.name == "yolact_plus_resnet50"
    assert torch.equal(
        model.state_dict()["maskiou_net.maskiou_net.10.weight"], weights["maskiou_net.maskiou_net.10.weight"]
    )


def test_fused_copy_keeps_deformable_convs(plus_results):
    from yolact_fast.engine import get_engine

    model, _, _ = plus_results
    fused = get_engine(model).module
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert (
        sum(isinstance(m, ModulatedDeformConv2d) for m in fused.modules())
        == sum(isinstance(m, ModulatedDeformConv2d) for m in model.modules())
        > 0
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(plus_golden, plus_results):
    model, image, cpu = plus_results
    gpu_model = yf.load(model.state_dict(), config=model.config, device="cuda")
    # cuDNN's default TF32 convolutions round to 10-bit mantissas (on an H100, 2026-11-24:
    # 5 of 100 detections changed); the CPU and the golden data are float32 throughout
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        inst = yf.segment(image, model=gpu_model).to("cpu")
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    stats = match_detections(inst, expected_in_display_order(plus_golden))
    assert stats["matched_fraction"] == 1.0 and stats["max_score_diff"] <= 1e-4


def test_missing_torchvision_is_a_clear_error(monkeypatch):
    import sys

    conv = ModulatedDeformConv2d(2, 2)
    monkeypatch.setitem(sys.modules, "torchvision.ops", None)
    with pytest.raises(ImportError, match=r"YOLACT\+\+ .* need torchvision"):
        conv(torch.rand(1, 2, 5, 5))


def test_bad_dcn_settings_are_refused():
    with pytest.raises(ValueError, match="dcn_layers needs one entry per stage"):
        configs.BackboneConfig("resnet", (3, 4, 6, 3), (1, 2, 3), (256, 512, 1024, 2048), dcn_layers=(0, 4))
    with pytest.raises(ValueError, match="dcn_interval must be a positive int"):
        configs.BackboneConfig("resnet", (3, 4, 6, 3), (1, 2, 3), (256, 512, 1024, 2048), dcn_interval=0)
    basic = configs.yolact_demo.replace(
        backbone=configs.BackboneConfig(
            "resnet_basic", (2, 2, 2, 2), (1, 2, 3), (32, 64, 128, 256), width=32, dcn_layers=(0, 2, 2, 2)
        )
    )
    with pytest.raises(ValueError, match="dcn_layers need backbone kind 'resnet'"):
        yf.Yolact(basic)
