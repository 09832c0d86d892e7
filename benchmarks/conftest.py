"""Options and fixtures shared by the pytest-benchmark suites (yolact_base with rule weights,
the 480x640 golden image); prints, after the pytest-benchmark tables, each benchmark's speed
relative to the baseline of its group (the entry whose name contains "reference" or "eager").

    pytest benchmarks --device cpu --threads 2      # the CPU suites on 2 threads (default)
    pytest benchmarks --device cuda                 # bench_cuda.py only (needs a GPU)

Results worth keeping go to benchmarks/results/, named by machine and date, with the command
that produced them in the accompanying text.
"""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # inputs.py, golden_data.py
DEVICES = ("cpu", "cuda", "all")


def pytest_addoption(parser):
    group = parser.getgroup("yolact_fast benchmarks")
    group.addoption(
        "--device",
        choices=DEVICES,
        default="all",
        help="run the suites of this device only: cpu (all but bench_cuda.py), cuda (bench_cuda.py)",
    )
    group.addoption("--threads", type=int, default=2, help="torch intra-op threads (default 2)")


def pytest_configure(config):
    threads = config.getoption("--threads")
    if threads < 1:
        raise pytest.UsageError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def suite_device(item) -> str:
    return "cuda" if "cuda" in Path(str(item.fspath)).stem else "cpu"


def pytest_collection_modifyitems(config, items):
    wanted = config.getoption("--device")
    if wanted == "all":
        return
    deselected = [item for item in items if suite_device(item) != wanted]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if suite_device(item) == wanted]


@pytest.fixture(scope="session")
def model():
    """yolact_base with weight-rule weights (seed 0), the model of the golden case."""
    import yolact_fast as yf
    from yolact_fast.model.weight_rule import rule_weights

    return yf.load(rule_weights("yolact_base", 0), config="yolact_base")


@pytest.fixture(scope="session")
def image():
    """The golden 480x640 synthetic image, uint8 [3,H,W] RGB."""
    from yolact_fast.data.synthetic import golden_image

    return golden_image(0, 480, 640)


def _is_baseline(name):
    return "reference" in name or "eager" in name


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    benchmarks = [b for b in getattr(session, "benchmarks", []) if b.stats is not None]
    if not benchmarks:
        return
    groups = {}
    for bench in benchmarks:
        groups.setdefault(bench.group, []).append(bench)
    terminalreporter.section("speed-up over the baseline of each group (median / median)")
    for group, members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        baselines = [b for b in members if _is_baseline(b.name)]
        if not baselines:
            continue
        base = baselines[0]
        terminalreporter.write_line(f"{group}:")
        for bench in sorted(members, key=lambda b: b.stats.median):
            ratio = base.stats.median / bench.stats.median
            terminalreporter.write_line(f"  {bench.name:<48} {bench.stats.median * 1e3:9.2f} ms  {ratio:7.2f}x")
