"""--backbone-weights: torchvision ResNet state dicts and the official backbone files mapped
onto the backbone, with a report of loaded and skipped keys. Files are generated here from
randomly initialised models (nothing is downloaded)."""

import re

import pytest
import torch

from yolact_fast import configs
from yolact_fast.model import Yolact
from yolact_fast.model.backbone import DarkNetBackbone
from yolact_fast.model.backbone_weights import backbone_key, load_backbone_weights

pytestmark = pytest.mark.usefixtures("one_thread")


def _torchvision_layout(backbone_state):
    """Our backbone's keys in torchvision's layout (layers.N -> layer{N+1}), plus an fc."""
    state = {
        re.sub(r"^layers\.(\d)\.", lambda m: f"layer{int(m.group(1)) + 1}.", k): v for k, v in backbone_state.items()
    }
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    return state


def _randomised(state):
    g = torch.Generator().manual_seed(0)
    return {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v) for k, v in state.items()}


def _assert_backbone_equals(model, mapped):
    own = model.backbone.state_dict()
    for key, value in mapped.items():
        assert torch.equal(own[key], value.to(own[key].dtype)), key


@pytest.mark.parametrize("depth,config", [(50, "yolact_resnet50"), (101, "yolact_base")])
def test_torchvision_resnet_state_dict(tmp_path, depth, config):
    torchvision = pytest.importorskip("torchvision")
    reference = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    state = _randomised(reference.state_dict())
    path = tmp_path / f"resnet{depth}.pth"
    torch.save(state, path)
    model = Yolact(configs.get_config(config))
    report = load_backbone_weights(model, str(path))
    assert report.skipped == {"fc.weight": "not in the backbone", "fc.bias": "not in the backbone"}
    assert report.missing == []
    assert len(report.loaded) == len(model.backbone.state_dict())
    _assert_backbone_equals(model, {backbone_key(k): v for k, v in state.items() if not k.startswith("fc.")})
    assert "loaded" in str(report) and "skipped fc.weight" in str(report)


def test_official_resnet101_reducedfc_layout(tmp_path):
    # torchvision keys, a reduced fc and no num_batches_tracked (saved by an older torch)
    model = Yolact(configs.yolact_base)
    state = _torchvision_layout(_randomised(model.backbone.state_dict()))
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"], state["fc.bias"] = torch.randn(10, 2048), torch.randn(10)
    path = tmp_path / "resnet101_reducedfc.pth"
    torch.save(state, path)
    report = load_backbone_weights(model, str(path))
    assert set(report.skipped) == {"fc.weight", "fc.bias"} and report.missing == []
    _assert_backbone_equals(model, {backbone_key(k): v for k, v in state.items() if not k.startswith("fc.")})


def test_official_darknet53_layout(tmp_path):
    state = _randomised(DarkNetBackbone((1, 2, 8, 8, 4)).state_dict())
    assert "_preconv.0.weight" in state and "layers.4.4.conv2.1.running_var" in state
    path = tmp_path / "darknet53.pth"
    torch.save(state, path)
    model = Yolact(configs.yolact_darknet53)
    report = load_backbone_weights(model, str(path))
    assert report.skipped == {} and report.missing == []
    _assert_backbone_equals(model, state)


def test_prefixes_wrappers_and_mismatched_shapes():
    model = Yolact(configs.yolact_demo)
    state = _randomised(model.backbone.state_dict())
    state["layers.0.0.conv1.weight"] = torch.randn(1, 1, 3, 3)
    before = model.backbone.layers[0][0].conv1.weight.detach().clone()
    report = load_backbone_weights(model, {"state_dict": {f"module.{k}": v for k, v in state.items()}})
    assert list(report.skipped) == ["module.layers.0.0.conv1.weight"]
    assert "shape (1, 1, 3, 3)" in report.skipped["module.layers.0.0.conv1.weight"]
    assert report.missing == ["layers.0.0.conv1.weight"]
    assert torch.equal(model.backbone.layers[0][0].conv1.weight, before)
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])
    # a whole YOLACT checkpoint's backbone
    full = {f"backbone.{k}": v for k, v in _randomised(model.backbone.state_dict()).items()}
    full["fpn.lat_layers.0.weight"] = torch.zeros(1)
    report = load_backbone_weights(model, full)
    assert list(report.skipped) == ["fpn.lat_layers.0.weight"] and report.missing == []


def test_a_file_for_another_backbone_is_refused(tmp_path):
    state = DarkNetBackbone((1, 2, 8, 8, 4)).state_dict()
    with pytest.raises(RuntimeError, match="no tensor of .* fits the resnet_basic backbone"):
        load_backbone_weights(Yolact(configs.yolact_demo), state)
    with pytest.raises(FileNotFoundError):
        load_backbone_weights(Yolact(configs.yolact_demo), str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(RuntimeError, match="cannot read checkpoint"):
        load_backbone_weights(Yolact(configs.yolact_demo), str(tmp_path / "junk.pth"))
