"""Committed training recipes. ``python -m yolact_fast.train.recipes demo --out DIR`` re-trains
the embedded demo model (``yolact_fast/weights/demo.pt``; scripts/train_demo.sh wraps it).

A recipe is a sequence of stages; stage 1 trains into ``DIR``, stage k > 1 into ``DIR/stage<k>``
starting from the previous stage's ``model.pt`` (fresh optimiser and schedule). The last stage's
weights are also written as ``DIR/<recipe>.pt`` in float16 (the shipped file).

The demo recipe: ``yolact_demo`` (half-width ResNet-18, 256 px) from scratch on 7,200
synthetic-shape images (seed 0; evaluation uses seed 1000), one pass of 900 steps of batch 8,
AdamW 2e-3 with warm-up and cosine decay, photometric distortion and mirroring (expand and crop
are off: the synthetic data already varies scale and position).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import NamedTuple, Tuple

import torch

from ..data.transforms import Augment
from ..model.checkpoint import save_weights
from .trainer import TrainOptions, train

_DEMO_AUGMENT = Augment(photometric=True, expand=False, crop=False, mirror=True)


class Stage(NamedTuple):
    config: str
    data: str
    options: TrainOptions


DEMO_RECIPE: Tuple[Stage, ...] = (
    Stage(
        "yolact_demo",
        "synthetic:7200:0",
        TrainOptions(
            epochs=1,
            batch_size=8,
            lr=2e-3,
            weight_decay=1e-4,
            warmup_steps=100,
            seed=0,
            num_workers=1,
            log_every=10,
            checkpoint_every=100,
            augment=_DEMO_AUGMENT,
        ),
    ),
)
RECIPES = {"demo": DEMO_RECIPE}


def stage_dir(out_dir: str, index: int) -> str:
    return out_dir if index == 0 else os.path.join(out_dir, f"stage{index + 1}")


def run(name: str, out_dir: str, resume: str = None, threads: int = 2, first_stage: int = 1) -> dict:
    """Train recipe ``name`` into ``out_dir`` (from stage ``first_stage``, 1-based); writes
    ``out_dir/<name>.pt`` (float16) from the last stage."""
    from ..data import open_dataset

    torch.set_num_threads(threads)
    summaries = []
    model = None
    for index, stage in enumerate(RECIPES[name]):
        if index + 1 < first_stage:
            continue
        init = None if index == 0 else os.path.join(stage_dir(out_dir, index - 1), "model.pt")
        summary, model = train(
            stage.config,
            open_dataset(stage.data),
            stage_dir(out_dir, index),
            stage.options,
            resume=resume if index + 1 == first_stage else None,
            init_weights=init,
        )
        summaries.append(summary)
    half_path = os.path.join(out_dir, f"{name}.pt")
    save_weights(model, half_path, half=True)
    return {"stages": summaries, "half_weights": half_path}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="run a committed training recipe")
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", default=None, help="a last.pt to continue the first stage run from")
    parser.add_argument("--stage", type=int, default=1, help="start at this stage (1-based)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.recipe, args.out, args.resume, args.threads, args.stage), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
