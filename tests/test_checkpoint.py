"""Loading official-layout checkpoints: paths, files, state dicts, quirks, strict errors."""

import io
import os
import pickle

import pytest
import torch

import yolact_fast as yf
from yolact_fast.model import filter_official_keys, infer_config
from yolact_fast.model.weight_rule import rule_weights


@pytest.fixture(scope="session")
def resnet50_weights():
    return rule_weights("yolact_resnet50", 1)


@pytest.fixture(scope="session")
def resnet50_file(tmp_path_factory, resnet50_weights):
    path = tmp_path_factory.mktemp("ckpt") / "yolact_resnet50_54_800000.pth"
    torch.save(resnet50_weights, path)
    return path


def assert_same_weights(model, state_dict):
    ours = model.state_dict()
    assert ours.keys() == state_dict.keys()
    for key, value in state_dict.items():
        assert torch.equal(ours[key], value), key


def test_load_from_path_infers_config(resnet50_file, resnet50_weights):
    model = yf.load(resnet50_file)
    assert model.config == yf.configs.yolact_resnet50
    assert not model.training
    assert_same_weights(model, resnet50_weights)
    assert yf.load(str(resnet50_file)).config.name == "yolact_resnet50"


def test_load_from_open_file_and_bytes(resnet50_file, resnet50_weights):
    with open(resnet50_file, "rb") as f:
        assert_same_weights(yf.load(f), resnet50_weights)
    buffer = io.BytesIO(resnet50_file.read_bytes())
    assert yf.load(buffer).config.name == "yolact_resnet50"


def test_load_from_state_dict_with_config(resnet50_weights):
    model = yf.load(resnet50_weights, config=yf.configs.yolact_resnet50)
    assert_same_weights(model, resnet50_weights)


@pytest.mark.parametrize("config_name", ["yolact_base", "yolact_darknet53", "yolact_resnet50"])
def test_infer_config_from_keys(config_name):
    with torch.device("meta"):
        state_dict = yf.Yolact(yf.configs.get_config(config_name)).state_dict()
    assert infer_config(state_dict) == yf.configs.get_config(config_name)


def test_im700_is_told_by_file_name():
    with torch.device("meta"):
        state_dict = yf.Yolact(yf.configs.yolact_base).state_dict()
    assert infer_config(state_dict, "weights/yolact_im700_54_800000.pth").name == "yolact_im700"
    assert infer_config(state_dict, "weights/yolact_base_54_800000.pth").name == "yolact_base"
    assert infer_config(state_dict).name == "yolact_base"


def test_other_class_count_gets_generic_names():
    config = yf.configs.yolact_resnet50.replace(class_names=("cat", "dog", "bird"))
    with torch.device("meta"):
        state_dict = yf.Yolact(config).state_dict()
    inferred = infer_config(state_dict)
    assert inferred.num_classes == 4 and inferred.class_names == ("class_1", "class_2", "class_3")


def test_official_quirks_are_dropped(resnet50_weights):
    state_dict = dict(resnet50_weights)
    # Pre-rename backbone keys and v1.0's extra downsample convs, as in old official files.
    state_dict["backbone.layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    state_dict["fpn.downsample_layers.2.weight"] = torch.zeros(256, 256, 3, 3)
    state_dict["fpn.downsample_layers.3.bias"] = torch.zeros(256)
    filtered = filter_official_keys(state_dict, yf.configs.yolact_resnet50)
    assert filtered.keys() == resnet50_weights.keys()
    assert_same_weights(yf.load(state_dict), resnet50_weights)


def test_fpn_layers_are_stored_reversed(resnet50_weights):
    assert resnet50_weights["fpn.lat_layers.0.weight"].shape == (256, 2048, 1, 1)
    assert resnet50_weights["fpn.lat_layers.2.weight"].shape == (256, 512, 1, 1)


def test_missing_unexpected_and_misshaped_keys_are_listed(resnet50_weights):
    state_dict = dict(resnet50_weights)
    del state_dict["proto_net.0.weight"]
    del state_dict["semantic_seg_conv.bias"]
    state_dict["head.extra.weight"] = torch.zeros(1)
    state_dict["prediction_layers.0.bbox_layer.bias"] = torch.zeros(13)
    with pytest.raises(RuntimeError) as error:
        yf.load(state_dict, config="yolact_resnet50")
    message = str(error.value)
    assert "missing (2): proto_net.0.weight, semantic_seg_conv.bias" in message
    assert "unexpected (1): head.extra.weight" in message
    assert "prediction_layers.0.bbox_layer.bias: checkpoint (13,) vs model (12,)" in message


def test_mismatched_checkpoint_and_config(resnet50_weights):
    with pytest.raises(RuntimeError, match=r"(?s)does not match yolact_base.*missing \(306\)"):
        yf.load(resnet50_weights, config="yolact_base")
    with pytest.raises(RuntimeError, match="does not match yolact_darknet53"):
        yf.load(resnet50_weights, config="yolact_darknet53")


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no_such.pth"):
        yf.load("no_such.pth")


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(RuntimeError, match="cannot read checkpoint.*garbage.pth"):
        yf.load(path)


def test_pickled_code_is_refused(tmp_path):
    """weights_only=True: arbitrary pickled objects are not executed."""
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"x": __import__("collections").OrderedDict, "y": object()}, f, protocol=2)
    with pytest.raises(RuntimeError, match="cannot read checkpoint"):
        yf.load(path)


def test_checkpoint_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(RuntimeError, match="does not hold a state dict"):
        yf.load(path)


def test_unknown_and_uninferable_configs(resnet50_weights):
    with pytest.raises(ValueError, match="unknown config 'yolact_huge'"):
        yf.load(resnet50_weights, config="yolact_huge")
    with pytest.raises(ValueError, match="cannot infer the config"):
        yf.load({"conv.weight": torch.zeros(1)})
    odd = {k: v for k, v in resnet50_weights.items() if not k.startswith("backbone.layers.2.5.")}
    with pytest.raises(ValueError, match=r"blocks per stage \(3, 4, 5, 3\)"):
        yf.load(odd)
    with pytest.raises(TypeError, match="config must be"):
        yf.load(resnet50_weights, config=3)
    with pytest.raises(TypeError, match="checkpoint source"):
        yf.load(42)


def test_demo_model_ships_in_the_package():
    from yolact_fast.model.checkpoint import DEMO_PATH

    model = yf.load("demo")
    assert model.config.name == "yolact_demo" and model.config.class_names == yf.configs.SHAPE_CLASSES
    assert not model.training and model.config.max_size == 256
    assert os.path.getsize(DEMO_PATH) <= 20 * 2**20
    saved = torch.load(DEMO_PATH, map_location="cpu", weights_only=True)  # plain tensors and strings
    assert saved["config"] == "yolact_demo" and tuple(saved["class_names"]) == yf.configs.SHAPE_CLASSES


def test_demo_model_missing_from_installation(monkeypatch, tmp_path):
    from yolact_fast.model import checkpoint

    monkeypatch.setattr(checkpoint, "DEMO_PATH", str(tmp_path / "demo.pt"))
    with pytest.raises(RuntimeError, match="demo model is missing"):
        yf.load("demo")


def test_wrapped_state_dict(resnet50_weights):
    assert_same_weights(yf.load({"state_dict": resnet50_weights}), resnet50_weights)
