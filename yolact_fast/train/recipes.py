"""Committed training recipes. ``python -m yolact_fast.train.recipes demo --out DIR`` re-trains
the embedded demo model (``yolact_fast/weights/demo.pt``; scripts/train_demo.sh wraps it).

The demo recipe: ``yolact_demo`` (half-width ResNet-18, 256 px) from scratch on 7,200
synthetic-shape images (seed 0), one pass, batch 8, AdamW 2e-3 with warm-up and cosine decay,
photometric distortion and mirroring (expand and crop are off: the synthetic data already
varies scale and position). The shipped file stores the weights in float16.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from ..data.transforms import Augment
from .trainer import TrainOptions, save_weights, train

DEMO_RECIPE = {
    "config": "yolact_demo",
    "data": "synthetic:7200:0",
    "options": TrainOptions(epochs=1, batch_size=8, lr=2e-3, weight_decay=1e-4, warmup_steps=100,
                            seed=0, num_workers=1, log_every=10, checkpoint_every=100,
                            augment=Augment(photometric=True, expand=False, crop=False, mirror=True)),
}
RECIPES = {"demo": DEMO_RECIPE}


def run(name: str, out_dir: str, resume: str = None, threads: int = 2) -> dict:
    """Train recipe ``name`` into ``out_dir``; also writes ``out_dir/demo.pt`` (float16)."""
    from ..data import open_dataset

    torch.set_num_threads(threads)
    recipe = RECIPES[name]
    dataset = open_dataset(recipe["data"])
    summary, model = train(recipe["config"], dataset, out_dir, recipe["options"], resume=resume)
    half_path = os.path.join(out_dir, f"{name}.pt")
    save_weights(model, half_path, half=True)
    summary["half_weights"] = half_path
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="run a committed training recipe")
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", default=None, help="a last.pt to continue from")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.recipe, args.out, args.resume, args.threads), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
