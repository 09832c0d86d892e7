"""Prints, after the pytest-benchmark tables, each benchmark's speed relative to the
baseline of its group (the entry whose name contains "reference" or "eager")."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # inputs.py, golden_data.py
torch.set_num_threads(2)


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
            terminalreporter.write_line(
                f"  {bench.name:<48} {bench.stats.median * 1e3:9.2f} ms  {ratio:7.2f}x"
            )
