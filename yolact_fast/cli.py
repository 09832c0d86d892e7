"""Command line: ``yolact-fast segment``, ``demo``, ``train``, ``eval`` and ``export``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional, Sequence

DEMO_IMAGE = (0, 480, 640)  # make_image(seed, H, W) of the golden case
DEMO_SEED = 2029  # synthetic_shapes seed of the demo image (never used in training)
DATA_HELP = ("a COCO json, a directory with annotations.json and images/, or "
             "synthetic:N[:SEED[:SIZE]] (generated shapes)")


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
        "demo", help="segment a generated synthetic-shapes image with the embedded demo model"
    )
    demo.add_argument("--out", required=True, help="output directory")
    demo.add_argument("--seed", type=int, default=DEMO_SEED, help="synthetic image seed")
    demo.add_argument("--draw-threshold", type=float, default=0.5,
                      help="only instances with a score >= this are drawn (default 0.5)")
    demo.add_argument("--random-weights", metavar="CONFIG", default=None,
                      help="instead, run CONFIG with RANDOM (weight-rule) weights on the golden synthetic image")

    train = commands.add_parser("train", help="train on COCO-format or synthetic data")
    train.add_argument("--config", required=True, help="config name (e.g. yolact_demo)")
    train.add_argument("--data", required=True, help=DATA_HELP)
    train.add_argument("--images", default=None, help="image directory (default: next to the json)")
    train.add_argument("--epochs", type=int, required=True)
    train.add_argument("--out", required=True, help="output directory (last.pt, model.pt, loss_log.jsonl)")
    train.add_argument("--resume", nargs="?", const="auto", default=None,
                       help="continue from a last.pt (default: OUT/last.pt)")
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--workers", type=int, default=0)
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    train.add_argument("--no-augment", action="store_true", help="no photometric/expand/crop/mirror")

    evaluate = commands.add_parser("eval", help="COCO box and mask AP (pycocotools COCOeval)")
    evaluate.add_argument("--weights", required=True, help="'demo', a yolact_fast model.pt or an official .pth")
    evaluate.add_argument("--config", default=None, help="config name (default: from the weights)")
    evaluate.add_argument("--data", required=True, help=DATA_HELP)
    evaluate.add_argument("--images", default=None, help="image directory (default: next to the json)")
    evaluate.add_argument("--out", default=None, help="where results.json and metrics.json go "
                          "(default: the current directory)")
    evaluate.add_argument("--score-threshold", type=float, default=0.05)
    evaluate.add_argument("--threads", type=int, default=None, help="torch CPU threads")

    export = commands.add_parser("export", help="write an ONNX file or an AOTInductor package")
    export.add_argument("--weights", required=True, help="'demo', a yolact_fast model.pt or an official .pth")
    export.add_argument("--config", default=None, help="config name (default: from the weights)")
    export.add_argument("--format", choices=("onnx", "aoti"), default="onnx",
                        help="onnx (run by onnxruntime) or aoti (AOTInductor .pt2 package)")
    export.add_argument("--out", required=True, help="output file (.onnx or .pt2)")
    export.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="fixed input image size (required for aoti; onnx: default dynamic)")
    export.add_argument("--network-only", action="store_true",
                        help="onnx: the network alone (preprocessed input, raw outputs, priors)")
    export.add_argument("--nms", choices=("fast", "cluster"), default="fast")
    export.add_argument("--score-threshold", type=float, default=0.05)
    export.add_argument("--iou-threshold", type=float, default=0.5)
    export.add_argument("--top-k", type=int, default=200)
    export.add_argument("--max-detections", type=int, default=100)
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (17-20)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "segment":
            return run_segment(args)
        if args.command == "train":
            return run_train(args)
        if args.command == "eval":
            return run_eval(args)
        if args.command == "export":
            return run_export(args)
        return run_demo(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, ImportError) as error:
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
    if args.random_weights:
        return run_random_demo(args)
    import yolact_fast as yf
    from .data import synthetic_shapes
    from .visualize import draw, to_pil

    model = yf.load("demo")
    image, _ = synthetic_shapes(1, args.seed, (model.config.max_size, model.config.max_size))[0]
    instances = yf.segment(image, model=model)
    shown = instances[instances.scores >= args.draw_threshold]
    os.makedirs(args.out, exist_ok=True)
    to_pil(image).save(os.path.join(args.out, "demo_input.png"))
    path = os.path.join(args.out, "demo.png")
    to_pil(draw(image, shown)).save(path)
    found = ", ".join(f"{n} {s:.2f}" for n, s in zip(shown.label_names, shown.scores.tolist()))
    print(f"demo model ({model.config.name}): {len(shown)} instance(s) with score >= "
          f"{args.draw_threshold} [{found}] -> {path}")
    return 0


def run_train(args) -> int:
    import torch

    from .data import Augment, open_dataset
    from .train import TrainOptions, train

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    resume = os.path.join(args.out, "last.pt") if args.resume == "auto" else args.resume
    dataset = open_dataset(args.data, args.images)
    skipped = dict(getattr(dataset, "skipped", {}))
    if skipped:
        print(f"data: skipped {skipped}", file=sys.stderr)
    augment = None if args.no_augment else Augment()
    options = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           num_workers=args.workers, augment=augment)
    summary, _ = train(args.config, dataset, args.out, options, resume=resume)
    print(json.dumps(summary, indent=1))
    return 0


def run_eval(args) -> int:
    import tempfile

    import torch

    import yolact_fast as yf
    from .data import open_dataset
    from .evaluate import evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    model = yf.load(args.weights, config=args.config)
    out = args.out or "."
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as cache:
        # Synthetic data is written as COCO first, so it is read by the same loader as user data.
        dataset = open_dataset(args.data, args.images, cache_dir=cache)
        metrics = evaluate(model, dataset, args.score_threshold, progress=True)
    results = metrics.pop("results")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f)
    metrics["skipped_annotations"] = dict(getattr(dataset, "skipped", {}))
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    box, mask = metrics["bbox"], metrics["segm"]
    print(f"{metrics['images']} images, {len(results)} detections ({model.config.name})")
    print(f"box AP {box['AP']:.4f}  AP50 {box['AP50']:.4f}  AP75 {box['AP75']:.4f}")
    print(f"mask AP {mask['AP']:.4f}  AP50 {mask['AP50']:.4f}  AP75 {mask['AP75']:.4f}")
    print(f"-> {os.path.join(out, 'results.json')}, {os.path.join(out, 'metrics.json')}")
    return 0


def run_export(args) -> int:
    import yolact_fast as yf

    model = yf.load(args.weights, config=args.config)
    options = dict(nms=args.nms, score_threshold=args.score_threshold,
                   iou_threshold=args.iou_threshold, top_k=args.top_k,
                   max_detections=args.max_detections)
    if args.format == "aoti":
        if args.image_size is None or args.network_only:
            raise ValueError("--format aoti needs --image-size H W and exports the whole segment path")
        yf.export.aoti_package(model, args.out, tuple(args.image_size), **options)
    else:
        yf.export.onnx(model, args.out, image_size=args.image_size,
                       postprocess=not args.network_only, opset=args.opset, **options)
    print(f"{model.config.name} -> {args.out} ({args.format})")
    return 0


def run_random_demo(args) -> int:
    import torch

    import yolact_fast as yf
    from .configs import get_config
    from .io import make_image
    from .model.weight_rule import rule_weights
    from .visualize import draw, to_pil

    args.top, args.seed = 10, 0
    config = get_config(args.random_weights)
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
