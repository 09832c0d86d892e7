"""``yolact-fast segment`` throughput in 1 and 2 processes (torchrun, gloo, CPU, one thread per
process): the demo model on 64 synthetic-shape images of 256x256, batch size 4.

Run: ``pytest benchmarks/bench_segment_ddp.py -s``. The figure is images / wall time of the
whole torchrun launch (process start-up, model load and the merge included), so it is a
lower bound of the steady-state rate; it goes to docs/distributed.md with the machine, date
and this command.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IMAGES = 64
SIZE = 256


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from PIL import Image

    from yolact_fast.data import synthetic_shapes

    path = tmp_path_factory.mktemp("images")
    for index, (image, _) in enumerate(synthetic_shapes(IMAGES, seed=11, size=(SIZE, SIZE))):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path / f"{index:03d}.png")
    return path


@pytest.mark.parametrize("processes", [1, 2])
def test_segment_ddp_images_per_second(benchmark, folder, tmp_path, processes):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("YOLACT_FAST_WEIGHTS", None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "yolact_fast",
        "segment",
        str(folder),
        "--out",
        str(tmp_path / "out"),
        "--batch-size",
        "4",
    ]

    def launch():
        started = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200, check=True)
        return time.perf_counter() - started

    seconds = benchmark.pedantic(launch, rounds=1, iterations=1)
    benchmark.extra_info["images_per_s"] = IMAGES / seconds
    print(f"\n{processes} process(es): {IMAGES / seconds:.2f} images/s ({IMAGES} images in {seconds:.1f} s)")
