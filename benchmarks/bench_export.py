"""Compiled and exported paths against ``yf.segment`` (the fused eager copy), yolact_base at
480x640, same thread count (2; see conftest.py).

Run: ``pytest benchmarks/bench_export.py --benchmark-columns=median,min,max,rounds -s``.
Paths: onnxruntime running the ``yf.export.onnx`` graph (CPU provider), ``torch.compile``
(inductor, freezing) of ``yf.export.segment_program``, and its AOTInductor package. The one-off
cost of each (export/compile, then the first call) is printed and stored in ``extra_info``;
each result is checked against ``yf.segment`` before it is timed. Needs ``yolact_fast[export]``.
"""

import functools
import statistics
import time

import pytest
import torch

import yolact_fast as yf
from yolact_fast import export
from comparisons import match_detections  # tests/ is on sys.path (benchmarks/conftest.py)

pytest.importorskip("onnxruntime")


ROUNDS = 5
GROUP = "segment yolact_base 480x640: compiled paths vs the fused eager copy"
setup_seconds = {}


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


def _check(result, expected, class_names):
    if isinstance(result, tuple):  # a SegmentProgram's padded outputs
        n = int(result[-1])
        result = yf.Instances(*(t[:n] for t in result[:4]), class_names)
    stats = match_detections(result, expected)
    assert len(result) == len(expected) and stats["matched_fraction"] >= 0.99, stats


def _call_program(program, image):
    with torch.no_grad():
        return program(image)


@pytest.fixture(scope="module")
def runners(model, image, expected, tmp_path_factory):
    """name -> one-argument callable (the image), each checked against yf.segment once."""
    folder = tmp_path_factory.mktemp("export")
    builds = {
        "onnxruntime": lambda: export.OnnxSegmenter(export.onnx(model, folder / "yolact_base.onnx"), threads=2),
        "inductor_freezing": lambda: functools.partial(
            _call_program, torch.compile(export.segment_program(model), options={"freezing": True})
        ),
        "aoti_package": lambda: export.load_aoti(
            export.aoti_package(model, folder / "yolact_base.pt2", tuple(image.shape[1:])), model.config.class_names
        ),
    }
    result = {"segment": functools.partial(yf.segment, model=model)}
    for name, build in builds.items():
        runner, first = _timed_setup(name, build, lambda r: r(image))
        _check(first, expected, model.config.class_names)
        result[name] = runner
    return result


def _run(benchmark, runners, name, image):
    if name in setup_seconds:
        benchmark.extra_info["build_s"], benchmark.extra_info["first_call_s"] = (
            round(v, 2) for v in setup_seconds[name]
        )
    return benchmark.pedantic(runners[name], args=(image,), rounds=ROUNDS, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group=GROUP)
def test_segment_fused_eager(benchmark, runners, image):
    _run(benchmark, runners, "segment", image)


@pytest.mark.benchmark(group=GROUP)
def test_onnxruntime(benchmark, runners, image):
    _run(benchmark, runners, "onnxruntime", image)


@pytest.mark.benchmark(group=GROUP)
def test_inductor_freezing(benchmark, runners, image):
    _run(benchmark, runners, "inductor_freezing", image)


@pytest.mark.benchmark(group=GROUP)
def test_aoti_package(benchmark, runners, image):
    _run(benchmark, runners, "aoti_package", image)


def test_interleaved_ratios(runners, image):
    """Speed of each path relative to yf.segment, the paths called in turn (round robin), so
    that a shared machine's changing load hits them alike. Median per path over the rounds."""
    times = {name: [] for name in runners}
    for _ in range(ROUNDS):
        for name, runner in runners.items():
            start = time.perf_counter()
            runner(image)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print("\ninterleaved medians (ratio = segment / path):")
    for name, median in medians.items():
        print(f"  {name:<20} {median * 1e3:9.1f} ms  {medians['segment'] / median:5.2f}x")
