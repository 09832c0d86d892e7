"""One process of the torchrun tests in tests/test_segment_files.py whose ranks are started with
different command lines, as a glob expanded on each machine or a mistake would give.

Usage: segment_worker.py MODE OUT INPUT... (one process per rank; ``yolact-fast segment``):
``inputs``: rank r segments INPUT[r:] (at least the last; rank 0's list must win); ``options``: rank 1 asks for
another --score-threshold; ``unshared``: rank 1 runs in another folder and --out is relative,
so rank 1 does not see what rank 0 writes there (as on a machine without the shared filesystem).
"""

import os
import sys

import torch

from yolact_fast.cli import main


def arguments(mode: str, out: str, inputs: list, rank: int) -> list:
    if mode == "inputs":
        return ["segment", *inputs[min(rank, len(inputs) - 1) :], "--out", out]
    if mode == "options":
        return ["segment", *inputs, "--out", out, "--score-threshold", "0.3" if rank else "0.05"]
    if mode == "unshared":
        os.chdir(os.path.dirname(out))
        if rank == 1:
            os.makedirs("elsewhere", exist_ok=True)
            os.chdir("elsewhere")
        return ["segment", *inputs, "--out", os.path.basename(out)]
    raise ValueError(f"unknown mode {mode!r}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    mode, out, *inputs = sys.argv[1:]
    sys.exit(main(arguments(mode, out, inputs, int(os.environ["RANK"]))))
