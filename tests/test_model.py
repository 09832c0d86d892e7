"""The network against the official layout and the golden raw outputs."""

import pytest
import torch
from torch import nn

import yolact_fast as yf
from yolact_fast.data.synthetic import golden_image
from yolact_fast import configs
from yolact_fast.model.fuse import fold_batchnorm, inference_copy
from yolact_fast.model.weight_rule import rule_weights, weight_roles
from yolact_fast.engine import get_engine

from golden_data import load_golden_array, load_golden_json
from comparisons import match_detections
from golden_data import golden_case_model, golden_rgb

CONFIG_NAMES = ["yolact_base", "yolact_resnet50", "yolact_im700", "yolact_darknet53"]


@pytest.mark.parametrize("config_name", CONFIG_NAMES)
def test_state_dict_layout_equals_official(config_name):
    with torch.device("meta"):
        state_dict = yf.Yolact(configs.get_config(config_name)).state_dict()
    ours = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in state_dict.items()]
    assert ours == load_golden_json(f"keys_{config_name}.json")["keys"]


@pytest.mark.parametrize("config_name", CONFIG_NAMES)
def test_weight_rule_roles_and_fingerprint(config_name):
    expected = load_golden_json(f"keys_{config_name}.json")
    assert weight_roles(k for k, _, _ in expected["keys"]) == expected["weight_rule_roles"]
    fingerprint = load_golden_json("weights_fingerprint.json")[config_name]
    for seed in ("0", "1"):
        weights = rule_weights(config_name, int(seed))
        total = sum(v.double().sum().item() for v in weights.values())
        total_abs = sum(v.double().abs().sum().item() for v in weights.values())
        assert total == pytest.approx(fingerprint[seed]["sum_all"], rel=1e-12, abs=1e-6)
        assert total_abs == pytest.approx(fingerprint[seed]["sum_abs_all"], rel=1e-12)
        for key, (key_sum, key_abs, first) in fingerprint[seed]["per_key"].items():
            value = weights[key].double()
            assert value.sum().item() == pytest.approx(key_sum, rel=1e-9, abs=1e-9)
            assert value.abs().sum().item() == pytest.approx(key_abs, rel=1e-9)
            assert value.flatten()[:4].tolist() == first


def _raw(model, golden):
    batch = torch.from_numpy(load_golden_array("input_550_resnet_480x640.npz", "input_tensor"))
    if golden["image"].shape[:2] != (480, 640):
        from yolact_fast.preprocess import preprocess

        batch = preprocess([golden_rgb(golden)], model.config, "cpu")
    with torch.inference_mode():
        backbone_outs, pyramid = model.features(batch)
        outputs = model.heads(pyramid)
    return backbone_outs, pyramid, outputs


# 1 vs 2 threads changes the official raw outputs by <= 1e-5 (golden README).
RAW_ATOL = 5e-5


def test_golden_backbone_fpn_and_head(golden, rule_model):
    model = golden_case_model(golden, rule_model)
    backbone_outs, pyramid, outputs = _raw(model, golden)
    for i, out in enumerate(backbone_outs):
        torch.testing.assert_close(out[0, :8, :8, :8], golden[f"backbone_out{i}_sample"], rtol=1e-5, atol=RAW_ATOL)
    for level, feature in enumerate(pyramid):
        torch.testing.assert_close(feature[0, :8, :8, :8], golden[f"fpn_P{level + 3}_sample"], rtol=1e-5, atol=RAW_ATOL)
    for name in ("loc", "conf_logits", "mask_coeffs", "proto"):
        torch.testing.assert_close(getattr(outputs, name)[0], golden[name], rtol=1e-5, atol=RAW_ATOL)


def test_fused_inference_copy_matches_golden(golden, rule_model):
    model = golden_case_model(golden, rule_model)
    fused = get_engine(model).module  # the copy segment() uses (cached on the model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    batch = torch.from_numpy(load_golden_array("input_550_resnet_480x640.npz", "input_tensor"))
    if golden["image"].shape[:2] != (480, 640):
        from yolact_fast.preprocess import preprocess

        batch = preprocess([golden_rgb(golden)], model.config, "cpu")
    with torch.inference_mode():
        outputs = fused(batch.contiguous(memory_format=torch.channels_last))
    for name in ("loc", "conf_logits", "mask_coeffs", "proto"):
        torch.testing.assert_close(getattr(outputs, name)[0], golden[name], rtol=1e-4, atol=2e-4)
    # The original keeps its official structure.
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_packed_convolutions_equal_plain_ones(rule_model):
    """oneDNN-packed convs with fused activations/residuals (CPU) give the plain fused values,
    for other sizes and batch sizes than the packing hint, without touching the input."""
    from yolact_fast.model.fuse import PackedConv2d, can_pack

    model = rule_model("yolact_resnet50", 1)
    plain, packed = inference_copy(model, pack_cpu=False), inference_copy(model)
    if not can_pack(plain):
        pytest.skip("no oneDNN in this PyTorch build")
    assert not any(isinstance(m, nn.Conv2d) for m in packed.modules())
    num_convs = sum(isinstance(m, nn.Conv2d) for m in plain.modules())
    assert sum(isinstance(m, PackedConv2d) for m in packed.modules()) == num_convs == 68
    x = torch.rand(2, 3, 137, 203).contiguous(memory_format=torch.channels_last)
    original = x.clone()
    with torch.inference_mode():
        for a, b in zip(plain(x), packed(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert torch.equal(x, original)


def test_fused_copy_layout_is_channels_last_on_the_cpu_only():
    """channels_last (and oneDNN packing) are CPU choices: on a GPU the channels_last float32
    copy was slower than the model in the default layout (docs/benchmarks.md). A model on
    another device (meta stands in for a GPU here) keeps the default layout, and segment
    feeds each copy its own input_memory_format."""
    cpu_copy = inference_copy(yf.load("demo"), pack_cpu=False)
    assert cpu_copy.input_memory_format == torch.channels_last
    weights = [m.weight for m in cpu_copy.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    assert weights and all(
        w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in weights if w.shape[1] > 1
    )
    meta_copy = inference_copy(yf.load("demo").to("meta"), pack_cpu=False)
    assert meta_copy.input_memory_format == torch.contiguous_format
    assert all(m.weight.is_contiguous() for m in meta_copy.modules() if isinstance(m, nn.Conv2d))
    forced = inference_copy(yf.load("demo").to("meta"), channels_last=True, pack_cpu=False)
    assert forced.input_memory_format == torch.channels_last


def test_segment_feeds_each_copy_its_input_layout():
    """run_network (segment, video) gives the network its input_memory_format: a copy in the
    default layout gets a contiguous batch, a channels_last one a channels_last batch."""
    from yolact_fast.segment import run_network

    model = yf.load("demo")
    image = golden_image(0, 64, 80)
    for channels_last in (False, True):
        network = inference_copy(model, channels_last=channels_last, pack_cpu=False)
        seen = []
        network.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        with torch.inference_mode():
            run_network([image], model, network)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        assert len(seen) == 1 and seen[0].is_contiguous(memory_format=layout)
        assert seen[0].is_contiguous() != channels_last


def test_fold_batchnorm_equals_conv_then_bn():
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
    bn = nn.BatchNorm2d(6).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5), bn.bias.normal_(), bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 4, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(fold_batchnorm(conv, bn)(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config_name,size", [("yolact_darknet53", (301, 257)), ("yolact_im700", (97, 411))])
def test_other_configs_load_strictly_and_segment_odd_sizes(config_name, size):
    model = yf.load(rule_weights(config_name, 3), config=config_name)
    assert model.config.name == config_name
    h, w = size
    image = golden_image(5, h, w)
    inst = yf.segment(image, model=model)
    eager = yf.segment_eager(image, model=model)
    assert inst.masks.shape == (len(inst), h, w) and inst.masks.dtype == torch.bool
    assert inst.boxes.dtype == torch.float32 and inst.labels.dtype == torch.int64
    assert 0 < len(inst) <= 100
    assert bool((inst.scores[:-1] >= inst.scores[1:]).all()) and bool((inst.scores > 0.05).all())
    assert bool((inst.boxes[:, 0::2] >= 0).all() and (inst.boxes[:, 0::2] <= w).all())
    assert bool((inst.boxes[:, 1::2] >= 0).all() and (inst.boxes[:, 1::2] <= h).all())
    # The fused network agrees with the official-equivalent path on unseen weights and sizes.
    assert_same_detections(inst, eager)


def assert_same_detections(actual, expected, min_fraction=0.99):
    """Same labels, scores within 1e-4, boxes within 1 px, mask IoU >= 0.99 for >= 99%."""
    stats = match_detections(actual, expected)
    assert stats["count_diff"] == 0, stats
    assert stats["matched_fraction"] >= min_fraction, stats
    return stats


def test_priors_match_golden():
    for config_name in CONFIG_NAMES:
        config = configs.get_config(config_name)
        golden_priors = torch.from_numpy(load_golden_array(f"priors_{config_name}.npz", "priors"))
        priors = yf.ops.make_priors(config, (config.max_size, config.max_size))
        assert torch.equal(priors, golden_priors)


def test_model_rejects_inconsistent_configs():
    with pytest.raises(ValueError, match="anchor levels"):
        yf.Yolact(configs.yolact_base.replace(fpn_num_downsample=1))
    with pytest.raises(ValueError, match="backbone kind"):
        yf.Yolact(configs.yolact_base.replace(backbone=configs.BackboneConfig("vgg", (1,), (0, 1, 2), (64,))))
