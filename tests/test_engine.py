"""The inference engine: options checked against the device, one engine per (model, device,
precision, runtime) reused while the weights are unchanged and rebuilt when they change
(seen without reading values), a bounded thread-safe cache, and every runtime and precision
giving the detections of the fp32 torch path."""

import copy
import sys
import threading

import pytest
import torch

import yolact_fast as yf
from yolact_fast import engine
from yolact_fast.benchmarking import agreement
from yolact_fast.engine import options as engine_options

IMAGE = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
NATIVE_BF16 = engine_options.native_bf16_cpu()
needs_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no native bfloat16 (AVX512-BF16 or AMX)")


def installed(name):
    return pytest.mark.skipif(not engine_options.runtime_installed(name), reason=f"{name} is not installed")


@pytest.fixture
def model():
    return copy.deepcopy(yf.load("demo"))


def _conf_bias(model):
    return model.prediction_layers[0].conf_layer.bias


def _same(a, b):
    return torch.equal(a.scores, b.scores) and torch.equal(a.labels, b.labels) and torch.equal(a.masks, b.masks)


# --- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keyword, value",
    [("precision", "fp64"), ("precision", "FP32"), ("precision", None), ("runtime", "tensorrt"), ("runtime", 1)],
)
def test_unknown_option_names_the_keyword(model, keyword, value):
    with pytest.raises(ValueError, match=keyword):
        yf.segment(IMAGE, model=model, **{keyword: value})


def test_fp16_on_a_cpu_is_refused(model):
    with pytest.raises(ValueError, match="fp16.*CPU"):
        yf.segment(IMAGE, model=model, precision="fp16")


def test_bf16_without_native_support_is_refused(model, monkeypatch):
    monkeypatch.setattr(engine_options, "native_bf16_cpu", lambda: False)
    with pytest.raises(ValueError, match="bf16.*native"):
        yf.segment(IMAGE, model=model, precision="bf16")
    assert yf.engine_info(model, precision="auto").precision == "fp32"


def test_auto_precision_on_this_cpu(model):
    assert yf.engine_info(model, precision="auto").precision == ("bf16" if NATIVE_BF16 else "fp32")


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_runtime_not_installed_names_the_extra(model, runtime, monkeypatch):
    monkeypatch.setitem(sys.modules, runtime, None)  # import fails as if not installed
    with pytest.raises(ImportError, match=rf"yolact_fast\[{runtime}\]"):
        yf.segment(IMAGE, model=model, runtime=runtime)


@installed("onnxruntime")
def test_auto_precision_resolves_per_runtime(model):
    assert yf.engine_info(model, precision="auto", runtime="onnxruntime").precision == "fp32"


def test_a_failed_build_leaves_nothing_cached(model):
    before = engine.cached_engines()
    with pytest.raises(ValueError):
        yf.segment(IMAGE, model=model, precision="fp16")
    assert engine.cached_engines() == before
    with pytest.raises(ValueError, match="precision"):
        yf.segment(IMAGE, model=model, precision=["fp32"])  # unhashable: still the clear error


def test_building_leaves_the_random_state_alone(model):
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    engine.clear_choices()
    engine.get_engine(model)  # builds and times the candidates
    assert torch.equal(torch.rand(3), want)


def test_onnxruntime_refuses_bf16(model):
    with pytest.raises(ValueError, match="onnxruntime.*fp32"):
        yf.segment(IMAGE, model=model, precision="bf16" if NATIVE_BF16 else "fp16", runtime="onnxruntime")


# --- the cache -------------------------------------------------------------------------------


def test_engine_is_built_once_and_reused(model):
    first = engine.get_engine(model)
    yf.segment(IMAGE, model=model)
    assert engine.get_engine(model) is first
    assert engine.get_engine(model, "fp32", "torch") is first


def _in_place(model):
    with torch.no_grad():
        _conf_bias(model)[1::6] += 4.0  # "circle" logits of every anchor


def _load_state_dict(model):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["prediction_layers.0.conf_layer.bias"][1::6] += 4.0
    model.load_state_dict(state)


def _optimizer_step(model):
    optimizer = torch.optim.SGD([_conf_bias(model)], lr=1.0)
    _conf_bias(model).grad = torch.zeros_like(_conf_bias(model))
    _conf_bias(model).grad[1::6] = -4.0
    optimizer.step()


def _replace_parameter(model):
    layer = model.prediction_layers[0].conf_layer
    bias = layer.bias.detach().clone()
    bias[1::6] += 4.0
    layer.bias = torch.nn.Parameter(bias)


def _buffer_in_place(model):
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean.add_(1.0)


@pytest.mark.parametrize("edit", [_in_place, _load_state_dict, _optimizer_step, _replace_parameter, _buffer_in_place])
def test_weight_edits_are_seen(model, edit):
    before = yf.segment(IMAGE, model=model, score_threshold=0.2)
    built = engine.get_engine(model)
    edit(model)
    after = yf.segment(IMAGE, model=model, score_threshold=0.2)
    fresh = yf.segment(IMAGE, model=copy.deepcopy(model), score_threshold=0.2)  # no cached engine
    assert engine.get_engine(model) is not built
    assert _same(after, fresh) and not _same(before, after)


def _edit_data(model):
    _conf_bias(model).data[1::6] += 4.0


def _edit_numpy(model):
    _conf_bias(model).detach().numpy()[1::6] += 4.0


@pytest.mark.parametrize("edit", [_edit_data, _edit_numpy])
def test_edits_that_bypass_the_version_counter_need_refresh(model, edit):
    """No call reads the weights' values: an edit the version counter does not see leaves the
    engine (and its results) as they were, until yf.refresh."""
    before = yf.segment(IMAGE, model=model, score_threshold=0.2)
    edit(model)
    assert _same(yf.segment(IMAGE, model=model, score_threshold=0.2), before)
    yf.refresh(model)
    after = yf.segment(IMAGE, model=model, score_threshold=0.2)
    assert _same(after, yf.segment(IMAGE, model=copy.deepcopy(model), score_threshold=0.2))
    assert not _same(after, before)


def test_no_call_reads_the_weights(model):
    """After the engine is built, a call runs no op on the model's own parameters."""
    yf.segment(IMAGE, model=model)
    seen = []

    class Spy(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            flat = torch.utils._pytree.tree_leaves((args, kwargs or {}))
            if any(
                isinstance(a, torch.Tensor) and a.layout == torch.strided and a.numel() and a.data_ptr() in pointers
                for a in flat
            ):  # packed oneDNN weights have no data_ptr
                seen.append(func)
            return func(*args, **(kwargs or {}))

    pointers = {t.data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    with Spy():
        yf.segment(IMAGE, model=model)
    assert seen == []
    with Spy():
        _conf_bias(model).sum()  # the spy sees a read
    assert seen


def test_parameters_made_in_inference_mode(model):
    """Inference tensors have no version counter: the engine keys on their identity."""
    with torch.inference_mode():
        frozen = yf.load(model.state_dict(), config=model.config)
    first = yf.segment(IMAGE, model=frozen)
    assert _same(first, yf.segment(IMAGE, model=model))
    assert engine.get_engine(frozen) is engine.get_engine(frozen)


def test_refresh_drops_the_engines(model):
    built = engine.get_engine(model)
    yf.refresh(model)
    assert engine.get_engine(model) is not built
    yf.refresh(copy.deepcopy(model))  # a model never run: nothing to drop


def test_cache_is_bounded(model):
    models = [copy.deepcopy(model) for _ in range(engine.MAX_ENGINES + 3)]
    for m in models:
        engine.get_engine(m)
    assert engine.cached_engines() <= engine.MAX_ENGINES
    assert engine.get_engine(models[-1]) is engine.get_engine(models[-1])


def test_threads_share_one_engine(model):
    want = yf.segment(IMAGE, model=model)
    yf.refresh(model)
    results, errors = [], []

    def run():
        try:
            results.append(yf.segment(IMAGE, model=model))
        except Exception as error:  # reported below
            errors.append(error)

    builds = []
    build = engine.cache.build_engine

    def counted(*args):
        builds.append(args)
        return build(*args)

    engine.cache.build_engine = counted
    try:
        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        engine.cache.build_engine = build
    assert errors == [] and len(results) == 4 and len(builds) == 1
    assert all(_same(result, want) for result in results)


def test_weights_changed_during_a_call_is_an_error(model):
    """Another thread changing the weights while a call runs: a clear error, and the next call
    builds a new engine from the new weights."""
    built = engine.get_engine(model)
    network = built.network

    def network_that_sees_an_edit(batch):
        with torch.inference_mode(False), torch.no_grad():
            _conf_bias(model).add_(1.0)  # what a training thread would do mid-call
        return network(batch)

    built.network = network_that_sees_an_edit
    with pytest.raises(RuntimeError, match="changed during the call"):
        yf.segment(IMAGE, model=model)
    built.network = network
    assert engine.get_engine(model) is not built
    assert _same(yf.segment(IMAGE, model=model), yf.segment(IMAGE, model=copy.deepcopy(model)))


def test_engine_info_describes_the_choice(model):
    info = yf.engine_info(model)
    assert (info.precision, info.runtime, info.device) == ("fp32", "torch", "cpu")
    assert info.network.startswith("torch/") and not info.cuda_graphs
    assert info.network in dict(info.timings_ms) or info.timings_ms == ()


def test_low_precision_models_run(model):
    """segment takes models of any float dtype: the engine copies them to its precision."""
    half = copy.deepcopy(model).to(torch.bfloat16)
    result = yf.segment(IMAGE, model=half)
    assert result.scores.dtype == torch.float32 and len(result) > 0


# --- every variant gives fp32 torch's detections ----------------------------------------------


def _detections_close(got, want):
    assert torch.equal(got.labels, want.labels)
    torch.testing.assert_close(got.scores, want.scores, rtol=0, atol=1e-4)
    torch.testing.assert_close(got.boxes, want.boxes, rtol=0, atol=1.0)
    differing = (got.masks ^ want.masks).sum().item()
    assert differing <= 1e-3 * want.masks.numel()


@pytest.mark.parametrize("variant", ["onednn_packed", "channels_last"])
def test_torch_fp32_variants_agree(model, variant):
    from yolact_fast.engine.networks import torch_variants
    from yolact_fast.preprocess import preprocess

    batch = preprocess([IMAGE], model.config, "cpu")
    with torch.inference_mode():
        want = model(batch)
        got = torch_variants(model, "fp32")[variant]()(batch)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "runtime",
    [
        pytest.param("onnxruntime", marks=installed("onnxruntime")),
        pytest.param("openvino", marks=installed("openvino")),
    ],
)
def test_external_runtimes_give_the_torch_detections(model, runtime):
    want = yf.segment(IMAGE, model=model)
    got = yf.segment(IMAGE, model=model, runtime=runtime)
    assert yf.engine_info(model, runtime=runtime).network == runtime
    _detections_close(got, want)


@installed("onnxruntime")
def test_auto_runtime_measures_the_installed_runtimes(model):
    info = yf.engine_info(model, precision="fp32", runtime="auto")
    measured = dict(info.timings_ms)
    assert "onnxruntime" in measured and any(name.startswith("torch/") for name in measured)
    assert info.network == min(measured, key=measured.get)
    _detections_close(yf.segment(IMAGE, model=model, runtime="auto"), yf.segment(IMAGE, model=model))


def _heldout_images(count=8):
    from yolact_fast.benchmarking import IMAGES_SEED
    from yolact_fast.data import synthetic_shapes

    shapes = synthetic_shapes(count, IMAGES_SEED, (256, 256))
    return [shapes[i][0] for i in range(count)]


@needs_bf16
@pytest.mark.parametrize("runtime", ["torch", pytest.param("openvino", marks=installed("openvino"))])
def test_bf16_agrees_with_fp32_on_heldout_images(model, runtime):
    images = _heldout_images()
    want = yf.segment(images, model=model)
    got = yf.segment(images, model=model, precision="bf16", runtime=runtime)
    assert sum(len(w[w.scores > 0.3]) for w in want) > 10  # the comparison has detections to compare
    assert agreement(want, got) >= 0.98


@needs_bf16
def test_yolact_plus_runs_in_bf16():
    """torchvision's deformable convolution has no bfloat16 kernel: it runs in float32
    inside a bf16 engine."""
    plus = yf.Yolact(yf.configs.yolact_plus_resnet50)
    image = torch.randint(0, 256, (3, 80, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    want = yf.segment(image, model=plus, score_threshold=0.0, max_detections=5)
    got = yf.segment(image, model=plus, score_threshold=0.0, max_detections=5, precision="bf16")
    assert len(got) == len(want) == 5 and got.box_scores is not None


def test_agreement_can_fail(model):
    images = _heldout_images(2)
    want = yf.segment(images, model=model)
    shifted = [yf.Instances(w.boxes, w.scores, (w.labels + 1) % 5, w.masks, w.class_names) for w in want]
    assert agreement(want, want) == 1.0 and agreement(want, shifted) == 0.0
