"""Compiled and exported paths against ``yf.segment`` (the fused eager copy), yolact_base at
480x640, same thread count (2; see conftest.py).

Run: ``pytest benchmarks/bench_export.py --benchmark-columns=median,min,max,rounds -s``.
Paths: onnxruntime running the ``yf.export.onnx`` graph (CPU provider), ``torch.compile``
(inductor, freezing) of ``yf.export.segment_program``, and its AOTInductor package. The one-off
cost of each (export/compile, then the first call) is printed and stored in ``extra_info``;
each result is checked against ``yf.segment`` before it is timed. Needs ``yolact_fast[export]``.
"""

import importlib.util
import time
from pathlib import Path

import pytest
import torch

import yolact_fast as yf
from yolact_fast import export
from yolact_fast.io import make_image
from yolact_fast.model.weight_rule import rule_weights

pytest.importorskip("onnxruntime")


def _tests_conftest():
    """tests/conftest.py (its match_detections), imported under another name: here
    ``conftest`` is benchmarks/conftest.py."""
    path = Path(__file__).resolve().parents[1] / "tests" / "conftest.py"
    spec = importlib.util.spec_from_file_location("yolact_fast_tests_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


match_detections = _tests_conftest().match_detections

ROUNDS = 5
GROUP = "segment yolact_base 480x640: compiled paths vs the fused eager copy"
setup_seconds = {}


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    return yf.load(rule_weights("yolact_base", 0), config="yolact_base")


@pytest.fixture(scope="module")
def image():
    return torch.from_numpy(make_image(0, 480, 640)[..., ::-1].copy()).permute(2, 0, 1).contiguous()


@pytest.fixture(scope="module")
def expected(model, image):
    return yf.segment(image, model=model)


def _timed_setup(name, build, first_call):
    """Build a runner and make its first call; record the seconds both took."""
    start = time.perf_counter()
    runner = build()
    built = time.perf_counter()
    result = first_call(runner)
    done = time.perf_counter()
    setup_seconds[name] = (built - start, done - built)
    print(f"\n{name}: build {built - start:.1f} s, first call {done - built:.1f} s")
    return runner, result


def _run(benchmark, name, function, *args):
    if name in setup_seconds:
        benchmark.extra_info["build_s"], benchmark.extra_info["first_call_s"] = (
            round(v, 2) for v in setup_seconds[name])
    return benchmark.pedantic(function, args=args, rounds=ROUNDS, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group=GROUP)
def test_segment_fused_eager(benchmark, model, image, expected):
    inst = _run(benchmark, "segment", yf.segment, image, model)
    assert len(inst) == len(expected)


@pytest.mark.benchmark(group=GROUP)
def test_onnxruntime(benchmark, model, image, expected, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "yolact_base.onnx"
    segmenter, first = _timed_setup(
        "onnxruntime", lambda: export.OnnxSegmenter(export.onnx(model, path), threads=2),
        lambda runner: runner(image))
    assert match_detections(first, expected)["matched_fraction"] >= 0.99
    _run(benchmark, "onnxruntime", segmenter, image)


def _call_program(program, image):
    with torch.no_grad():
        return program(image)


@pytest.mark.benchmark(group=GROUP)
def test_inductor_freezing(benchmark, model, image, expected):
    def build():
        return torch.compile(export.segment_program(model), options={"freezing": True})

    program, first = _timed_setup("inductor_freezing", build, lambda p: _call_program(p, image))
    n = int(first[-1])
    got = yf.Instances(*(t[:n] for t in first[:4]), model.config.class_names)
    assert match_detections(got, expected)["matched_fraction"] >= 0.99
    _run(benchmark, "inductor_freezing", _call_program, program, image)


@pytest.mark.benchmark(group=GROUP)
def test_aoti_package(benchmark, model, image, expected, tmp_path_factory):
    path = tmp_path_factory.mktemp("aoti") / "yolact_base.pt2"

    def build():
        return export.load_aoti(export.aoti_package(model, path, tuple(image.shape[1:])),
                                model.config.class_names)

    segmenter, first = _timed_setup("aoti_package", build, lambda runner: runner(image))
    assert match_detections(first, expected)["matched_fraction"] >= 0.99
    _run(benchmark, "aoti_package", segmenter, image)
