"""Public API details: module names, copyable models after segment(), Instances indexing, configs
built from lists, model-path caching, half models, priors per device."""

import copy
import io

import numpy as np
import pytest
import torch

import yolact_fast as yf
from yolact_fast import configs, ops
from yolact_fast.model import resolve as resolve_module

LIST_CONFIG = configs.yolact_base.replace(
    name="list_config",
    backbone=configs.BackboneConfig("resnet", [1, 1, 1, 1], [1, 2, 3], [256, 512, 1024, 2048]),
    max_size=96,
    class_names=["a", "b", "c"],
    pred_scales=[[24], [48], [96], [192], [384]],
)


@pytest.fixture(scope="module")
def model_and_result():
    torch.manual_seed(0)
    model = yf.Yolact(LIST_CONFIG).eval()
    image = torch.randint(0, 256, (3, 50, 60), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return model, yf.segment(image, model=model, score_threshold=0.0)


def test_configs_from_lists_are_frozen_and_hashable():
    assert LIST_CONFIG.class_names == ("a", "b", "c") and LIST_CONFIG.backbone.layers == (1, 1, 1, 1)
    assert hash(LIST_CONFIG) == hash(LIST_CONFIG.replace())
    assert ops.make_priors(LIST_CONFIG, (96, 96)).shape[0] == 3 * sum(h * w for h, w in configs.feature_sizes((96, 96)))


def test_model_stays_copyable_and_savable_after_segment(model_and_result):
    model, result = model_and_result
    assert len(result) > 0
    clone = copy.deepcopy(model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    torch.save(model, io.BytesIO())
    assert all(torch.equal(a, b) for a, b in zip(clone.state_dict().values(), model.state_dict().values()))


def test_instances_integer_indexing(model_and_result):
    _, result = model_and_result
    n = len(result)
    for index in (0, -1, np.int64(1), torch.tensor(2)):
        one = result[index]
        position = int(index) % n
        assert len(one) == 1 and torch.equal(one.masks[0], result.masks[position])
    with pytest.raises(IndexError, match="out of range"):
        result[n]
    with pytest.raises(IndexError, match="out of range"):
        result[-n - 1]


def test_checkpoint_path_loaded_once_per_file_version(tmp_path, monkeypatch, model_and_result):
    model, _ = model_and_result
    path = tmp_path / "tiny.pth"
    path.write_bytes(b"version 1")
    loads = []
    monkeypatch.setattr(resolve_module, "load", lambda p: loads.append(p) or model)
    resolve_module.clear_cache()
    assert resolve_module.resolve_model(str(path)) is model
    assert resolve_module.resolve_model(path) is model
    assert len(loads) == 1
    path.write_bytes(b"version 2, longer")
    resolve_module.resolve_model(str(path))
    assert len(loads) == 2
    resolve_module.clear_cache()
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        resolve_module.resolve_model(str(tmp_path / "missing.pth"))


def test_half_model_runs_in_segment_and_is_refused_by_the_eager_path(model_and_result):
    """segment's engine copies a float16 model to its own precision (fp32 by default); the
    official-equivalent eager path runs the model itself, in float32 only."""
    model, result = model_and_result
    half = copy.deepcopy(model).half()
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    assert yf.segment(image, model=half).scores.dtype == torch.float32
    with pytest.raises(TypeError, match="float32 models"):
        yf.segment_eager(image, half)


def test_option_types(model_and_result):
    model, _ = model_and_result
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    assert len(yf.segment(image, model=model, top_k=np.int64(5), score_threshold=0.0)) <= 100
    with pytest.raises(TypeError, match="top_k must be an int"):
        yf.segment(image, model=model, top_k=2.5)


def test_priors_cached_per_device_and_returned_fresh():
    a = ops.make_priors(LIST_CONFIG, (96, 96), device="cpu")
    b = ops.make_priors(LIST_CONFIG, (96, 96), device=torch.device("cpu"))
    assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    with pytest.raises(ValueError, match="variances must be a pair"):
        ops.decode_boxes(torch.zeros(1, 4), torch.zeros(1, 4), variances=1)


def test_public_modules_keep_their_names():
    import importlib

    import yolact_fast.testing  # noqa: F401  (not imported by yolact_fast itself)

    assert importlib.import_module("yolact_fast.reference") is yf.reference is yf.ops.reference
    assert callable(yf.reference.fast_nms) and callable(yf.data.synthetic_shapes)
    assert callable(yf.export.onnx) and callable(yf.testing.emulated_cuda.paste_masks)
