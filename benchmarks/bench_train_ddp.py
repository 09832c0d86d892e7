"""Training throughput in 1 and 2 processes (torchrun, gloo, CPU) on the configuration of
tests/test_train_distributed.py: the tiny 64 px model, global batch 4, 96 synthetic images
(24 steps), one thread per process.

Run: ``pytest benchmarks/bench_train_ddp.py -s``. The figure is the trainer's own
``images_per_s`` (training loop only, without process start-up); the benchmark time is the
whole torchrun launch.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "ddp_worker.py"


@pytest.mark.parametrize("processes", [1, 2])
def test_train_ddp_images_per_second(benchmark, tmp_path, processes):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        str(WORKER),
        str(tmp_path),
        "bench",
    ]

    def launch():
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=True)
        return json.loads(result.stdout.strip().splitlines()[-1])

    summary = benchmark.pedantic(launch, rounds=1, iterations=1)
    benchmark.extra_info["images_per_s"] = summary["images_per_s"]
    print(
        f"\n{processes} process(es): {summary['images_per_s']} images/s "
        f"({summary['steps']} steps in {summary['seconds']} s)"
    )
