"""End-to-end ``yf.segment`` against the official-equivalent eager path, yolact_base and
yolact_plus_base (YOLACT++: deformable convs, mask re-scoring) at 480x640.

Run: ``pytest benchmarks/bench_segment.py --benchmark-columns=median,min,max,rounds``.
The eager path is the unfused model (BatchNorm as separate ops, NCHW) with the pure-PyTorch
reference ops; the speed-up of ``segment`` over it is printed and stored in ``extra_info``.
Rounds are few: one forward of ResNet-101 at 550x550 takes about half a second to a second.
For yolact_plus_base, the share of the fused forward spent in torchvision's ``deform_conv2d``
(and the offset/mask convs feeding it) is measured with forward hooks and stored in
``extra_info``.
"""

import time

import pytest
import torch

import yolact_fast as yf
from yolact_fast.model.weight_rule import rule_weights
from yolact_fast.engine import get_engine
from yolact_fast.preprocess import preprocess

ROUNDS = 5
medians = {}


@pytest.fixture(scope="module")
def plus_model():
    return yf.load(rule_weights("yolact_plus_base", 0), config="yolact_plus_base")


def _run(benchmark, function, *args, **kwargs):
    result = benchmark.pedantic(function, args=args, kwargs=kwargs, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:  # None under --benchmark-disable
        medians[benchmark.name] = benchmark.stats.stats.median
    return result


def _speedup(benchmark, baseline_name):
    if benchmark.stats is None or baseline_name not in medians:
        return
    ratio = medians[baseline_name] / medians[benchmark.name]
    benchmark.extra_info["speedup_vs_eager"] = round(ratio, 3)
    print(f"\n{benchmark.name}: {ratio:.2f}x faster than {baseline_name}")


@pytest.mark.benchmark(group="segment yolact_base 480x640 (end to end)")
def test_segment_eager_official_equivalent(benchmark, model, image):
    inst = _run(benchmark, yf.segment_eager, image, model=model)
    assert len(inst) == 100


@pytest.mark.benchmark(group="segment yolact_base 480x640 (end to end)")
def test_segment(benchmark, model, image):
    inst = _run(benchmark, yf.segment, image, model=model)
    assert len(inst) == 100
    _speedup(benchmark, "test_segment_eager_official_equivalent")


@pytest.mark.benchmark(group="network forward yolact_base 550x550")
def test_forward_eager(benchmark, model, image):
    batch = preprocess([image], model.config, "cpu")
    with torch.inference_mode():
        _run(benchmark, model, batch)


@pytest.mark.benchmark(group="network forward yolact_base 550x550")
def test_forward_fused_channels_last(benchmark, model, image):
    network = get_engine(model).module
    batch = preprocess([image], model.config, "cpu").contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        _run(benchmark, network, batch)
    _speedup(benchmark, "test_forward_eager")


@pytest.mark.benchmark(group="segment yolact_plus_base 480x640 (end to end)")
def test_segment_plus_eager_official_equivalent(benchmark, plus_model, image):
    inst = _run(benchmark, yf.segment_eager, image, model=plus_model)
    assert len(inst) == 100


@pytest.mark.benchmark(group="segment yolact_plus_base 480x640 (end to end)")
def test_segment_plus(benchmark, plus_model, image):
    inst = _run(benchmark, yf.segment, image, model=plus_model)
    assert len(inst) == 100
    _speedup(benchmark, "test_segment_plus_eager_official_equivalent")
    _deform_share(benchmark, get_engine(plus_model).module, image)


def _deform_share(benchmark, network, image):
    """Seconds of one fused forward, and of it in the deformable convs (offset/mask conv +
    ``deform_conv2d``), timed with forward hooks (median of 3)."""
    from yolact_fast.model.deform import ModulatedDeformConv2d

    spent = []
    starts = {}

    def before(module, args):
        starts[module] = time.perf_counter()

    def after(module, args, output):
        spent.append(time.perf_counter() - starts[module])

    modules = [m for m in network.modules() if isinstance(m, ModulatedDeformConv2d)]
    hooks = [h for m in modules for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))]
    batch = preprocess([image], network.config, "cpu").contiguous(memory_format=torch.channels_last)
    totals, deform = [], []
    try:
        with torch.inference_mode():
            for _ in range(3):
                spent.clear()
                start = time.perf_counter()
                network(batch)
                totals.append(time.perf_counter() - start)
                deform.append(sum(spent))
    finally:
        for hook in hooks:
            hook.remove()
    total, deform_s = sorted(totals)[1], sorted(deform)[1]
    benchmark.extra_info.update(
        forward_s=round(total, 4),
        deform_conv_s=round(deform_s, 4),
        deform_conv_share=round(deform_s / total, 3),
        deform_convs=len(modules),
    )
    print(
        f"\nyolact_plus_base fused forward {total * 1e3:.0f} ms, of which {len(modules)} deformable "
        f"convs {deform_s * 1e3:.0f} ms ({100 * deform_s / total:.0f}%)"
    )
