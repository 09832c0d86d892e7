"""Command line: ``yolact-fast segment`` and ``yolact-fast demo``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional, Sequence

DEMO_IMAGE = (0, 480, 640)  # make_image(seed, H, W) of the golden case


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolact-fast", description="YOLACT instance segmentation")
    commands = parser.add_subparsers(dest="command", required=True)

    seg = commands.add_parser("segment", help="segment images; write overlays and COCO results")
    seg.add_argument("images", nargs="+", help="image files")
    seg.add_argument("--weights", required=True, help="official YOLACT checkpoint (.pth)")
    seg.add_argument("--config", default=None, help="config name (default: inferred from the checkpoint)")
    seg.add_argument("--out", required=True, help="output directory")
    seg.add_argument("--score-threshold", type=float, default=0.05)
    seg.add_argument("--draw-threshold", type=float, default=0.3,
                     help="only instances with a score >= this are drawn (default 0.3)")
    seg.add_argument("--device", default="cpu")

    demo = commands.add_parser(
        "demo", help="run the pipeline on a synthetic image with RANDOM weights (no trained model)"
    )
    demo.add_argument("--out", required=True, help="output directory")
    demo.add_argument("--config", default="yolact_base")
    demo.add_argument("--seed", type=int, default=0, help="weight-rule seed")
    demo.add_argument("--top", type=int, default=10, help="number of instances drawn")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "segment":
            return run_segment(args)
        return run_demo(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
        print(f"yolact-fast {args.command}: error: {error}", file=sys.stderr)
        return 1


def run_segment(args) -> int:
    from tqdm import tqdm

    import yolact_fast as yf
    from .io import read_image
    from .visualize import draw, to_pil

    for path in args.images:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image file not found: {path!r}")
    model = yf.load(args.weights, config=args.config, device=args.device)
    os.makedirs(args.out, exist_ok=True)
    results: List[dict] = []
    names = _overlay_names(args.images)
    progress = tqdm(list(zip(args.images, names)), desc="segment", unit="img",
                    disable=len(args.images) < 2, file=sys.stderr)
    for image_id, (path, name) in enumerate(progress):
        image = read_image(path)
        instances = yf.segment(image, model=model, score_threshold=args.score_threshold)
        results += instances.to_coco(image_id)
        shown = instances[instances.scores >= args.draw_threshold]
        to_pil(draw(image, shown)).save(os.path.join(args.out, name))
    results_path = os.path.join(args.out, "results.json")
    with open(results_path, "w") as f:
        json.dump({"images": [{"id": i, "file_name": p} for i, p in enumerate(args.images)],
                   "annotations": results}, f)
    print(f"{len(args.images)} image(s), {len(results)} instances -> {args.out}")
    return 0


def _overlay_names(paths: Sequence[str]) -> List[str]:
    """<stem>.png per image, made unique when stems repeat."""
    names, seen = [], {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(f"{stem}.png" if count == 0 else f"{stem}_{count}.png")
    return names


def run_demo(args) -> int:
    import torch

    import yolact_fast as yf
    from .configs import get_config
    from .io import make_image
    from .model.weight_rule import rule_weights
    from .visualize import draw, to_pil

    config = get_config(args.config)
    print(f"demo: {config.name} with RANDOM weights (deterministic weight rule, seed {args.seed}); "
          "this is not a trained model and its detections mean nothing.")
    model = yf.load(rule_weights(config, args.seed), config=config)
    seed, height, width = DEMO_IMAGE
    image = torch.from_numpy(make_image(seed, height, width)[..., ::-1].copy()).permute(2, 0, 1)
    instances = yf.segment(image, model=model)
    os.makedirs(args.out, exist_ok=True)
    to_pil(image.contiguous()).save(os.path.join(args.out, "demo_input.png"))
    path = os.path.join(args.out, "demo_random_weights.png")
    to_pil(draw(image, instances[: args.top])).save(path)
    print(f"{len(instances)} instances (top {min(args.top, len(instances))} drawn) -> {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
