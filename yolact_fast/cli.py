"""Command line: ``yolact-fast segment``, ``demo``, ``train``, ``eval``, ``export`` and ``benchmark``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

DEMO_IMAGE = (0, 480, 640)  # golden_image(seed, H, W) of the golden case
DEMO_SEED = 2029  # synthetic_shapes seed of the demo image (never used in training)
RANDOM_DEMO_TOP = 10  # instances drawn by the random-weights demo
RANDOM_DEMO_WEIGHT_SEED = 0
INTERRUPTED = 130  # the shell's exit status after SIGINT
DATA_HELP = (
    "a COCO json, a directory with annotations.json and images/, or synthetic:N[:SEED[:SIZE]] (generated shapes)"
)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """--precision and --runtime, as yf.segment's keywords (see yolact_fast.engine)."""
    from .engine import PRECISIONS, RUNTIMES

    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="network precision (default fp32; bf16 on CPUs with native bf16 and on "
        "CUDA, fp16 on CUDA, auto: the fastest safe one for the device)",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="torch",
        help="what runs the network (default torch; onnxruntime and openvino are "
        "optional extras; auto: the fastest installed one, measured)",
    )


def add_dist_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="torchrun: a rank that fails or stalls ends the others after this long (default 900)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolact-fast", description="YOLACT instance segmentation")
    commands = parser.add_subparsers(dest="command", required=True)

    seg = commands.add_parser(
        "segment", help="segment images, videos or a camera; write overlays, videos and COCO results"
    )
    seg.add_argument(
        "inputs",
        nargs="+",
        metavar="SOURCE",
        help="image or video files, folders (searched recursively for images), "
        "glob patterns ('imgs/**/*.jpg'), stream URLs (rtsp://...), or a camera "
        "index (0)",
    )
    seg.add_argument(
        "--weights",
        default=None,
        help="'demo', a yolact_fast model.pt or an official .pth (default: as "
        "yf.segment: $YOLACT_FAST_WEIGHTS, else the embedded demo model)",
    )
    seg.add_argument("--config", default=None, help="config name (default: inferred from the checkpoint)")
    seg.add_argument("--out", required=True, help="output folder (inputs' folder layout is kept)")
    seg.add_argument("--score-threshold", type=float, default=0.05)
    seg.add_argument(
        "--draw-threshold", type=float, default=0.3, help="only instances with a score >= this are drawn (default 0.3)"
    )
    seg.add_argument("--batch-size", type=int, default=4, help="images or frames per network batch (default 4)")
    seg.add_argument("--every", type=int, default=1, help="videos: segment every N-th frame")
    seg.add_argument("--start", type=int, default=0, help="videos: first frame index (default 0)")
    seg.add_argument("--end", type=int, default=None, help="videos: stop before this frame index")
    seg.add_argument(
        "--device", default="cpu", help="cpu, cuda (under torchrun: cuda:LOCAL_RANK) or cuda:N (default cpu)"
    )
    seg.add_argument(
        "--resume",
        action="store_true",
        help="skip the inputs whose outputs in --out are complete (from an earlier run, under any number of processes)",
    )
    add_dist_timeout(seg)
    add_engine_options(seg)

    demo = commands.add_parser("demo", help="segment a generated synthetic-shapes image with the embedded demo model")
    demo.add_argument("--out", required=True, help="output directory")
    demo.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"image seed (default: {DEMO_SEED}, a synthetic-shapes image the demo model never "
        f"saw; with --random-weights {DEMO_IMAGE[0]}, the golden image)",
    )
    demo.add_argument(
        "--draw-threshold", type=float, default=0.5, help="only instances with a score >= this are drawn (default 0.5)"
    )
    demo.add_argument(
        "--random-weights",
        metavar="CONFIG",
        default=None,
        help="instead, run CONFIG with RANDOM (weight-rule) weights on the golden synthetic image",
    )

    train = commands.add_parser("train", help="train on COCO-format or synthetic data")
    train.add_argument("--config", required=True, help="config name (e.g. yolact_demo)")
    train.add_argument("--data", required=True, help=DATA_HELP)
    train.add_argument("--images", default=None, help="image directory (default: next to the json)")
    train.add_argument("--epochs", type=int, required=True)
    train.add_argument("--out", required=True, help="output directory (last.pt, model.pt, loss_log.jsonl)")
    train.add_argument(
        "--resume", nargs="?", const="auto", default=None, help="continue from a last.pt (default: OUT/last.pt)"
    )
    train.add_argument(
        "--batch-size", type=int, default=8, help="global batch size, split evenly over torchrun processes (default 8)"
    )
    train.add_argument("--lr", type=float, default=2e-3, help="learning rate of the global batch")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--workers",
        type=int,
        default=0,
        help="data loader workers per process; they also prepare the loss targets (default 0)",
    )
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    train.add_argument("--no-augment", action="store_true", help="no photometric/expand/crop/mirror")
    train.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK if CUDA is available, else cpu")
    train.add_argument(
        "--amp", action="store_true", help="mixed precision: bfloat16 autocast on CPU, float16 + GradScaler on CUDA"
    )
    train.add_argument(
        "--backbone-weights",
        metavar="PATH",
        default=None,
        help="pretrained backbone: a torchvision ResNet state dict, resnet101_reducedfc.pth, "
        "resnet50-19c8e357.pth or darknet53.pth",
    )
    train.add_argument(
        "--freeze-bn",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="freeze BatchNorm (default: as the official recipe, frozen when a process's batch is below 6 images)",
    )
    add_dist_timeout(train)
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser("eval", help="COCO box and mask AP (pycocotools COCOeval)")
    evaluate.add_argument("--weights", required=True, help="'demo', a yolact_fast model.pt or an official .pth")
    evaluate.add_argument("--config", default=None, help="config name (default: from the weights)")
    evaluate.add_argument("--data", required=True, help=DATA_HELP)
    evaluate.add_argument("--images", default=None, help="image directory (default: next to the json)")
    evaluate.add_argument(
        "--out", default=None, help="where results.json and metrics.json go (default: the current directory)"
    )
    evaluate.add_argument("--score-threshold", type=float, default=0.05)
    evaluate.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    evaluate.add_argument(
        "--device", default="cpu", help="cpu, cuda (under torchrun: cuda:LOCAL_RANK) or cuda:N (default cpu)"
    )
    add_dist_timeout(evaluate)
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    add_engine_options(evaluate)

    bench = commands.add_parser(
        "benchmark", help="time every runtime x precision available here, each in its own process"
    )
    bench.add_argument("--weights", default="demo", help="'demo', a yolact_fast model.pt or an official .pth")
    bench.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="image size (default: the model's input size, square)",
    )
    bench.add_argument("--batch", type=int, default=8, help="batch size of the throughput column (default 8)")
    bench.add_argument("--runs", type=int, default=20, help="timed calls per row (default 20)")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    bench.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    bench.add_argument(
        "--precision",
        nargs="+",
        default=None,
        metavar="P",
        help="only these precisions' rows (fp32, bf16, fp16; default: every one this device runs)",
    )
    bench.add_argument(
        "--runtime",
        nargs="+",
        default=None,
        metavar="R",
        help="only these runtimes' rows (torch, onnxruntime, openvino, eager, onnxruntime-graph, "
        "openvino-graph; default: all)",
    )

    export = commands.add_parser("export", help="write an ONNX file or an AOTInductor package")
    export.add_argument("--weights", required=True, help="'demo', a yolact_fast model.pt or an official .pth")
    export.add_argument("--config", default=None, help="config name (default: from the weights)")
    export.add_argument(
        "--format",
        choices=("onnx", "aoti"),
        default="onnx",
        help="onnx (run by onnxruntime) or aoti (AOTInductor .pt2 package)",
    )
    export.add_argument("--out", required=True, help="output file (.onnx or .pt2)")
    export.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="fixed input image size (required for aoti; onnx: default dynamic)",
    )
    export.add_argument(
        "--network-only", action="store_true", help="onnx: the network alone (preprocessed input, raw outputs, priors)"
    )
    export.add_argument("--nms", choices=("fast", "cluster"), default="fast")
    export.add_argument("--score-threshold", type=float, default=0.05)
    export.add_argument("--iou-threshold", type=float, default=0.5)
    export.add_argument("--top-k", type=int, default=200)
    export.add_argument("--max-detections", type=int, default=100)
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (17-20)")
    return parser


def show_progress(args) -> bool:
    """Progress bars go to stderr: only when it is a terminal and --quiet is not given."""
    return not args.quiet and sys.stderr.isatty()


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
        if args.command == "benchmark":
            return run_benchmark(args)
        return run_demo(args)
    except (ValueError, TypeError, OSError, RuntimeError, ImportError) as error:
        print(f"yolact-fast {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"yolact-fast {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED


def run_segment(args) -> int:
    """One process, or one of a ``torchrun`` launch (each segments its share of the inputs)."""
    from .jobs import segment_files

    summary = segment_files(
        args.inputs,
        args.out,
        args.weights or None,
        config=args.config,
        device=_per_process_device(args.device),
        batch_size=args.batch_size,
        every=args.every,
        start=args.start,
        end=args.end,
        draw_threshold=args.draw_threshold,
        resume=args.resume,
        timeout_s=args.dist_timeout,
        progress=True,
        score_threshold=args.score_threshold,
        precision=args.precision,
        runtime=args.runtime,
    )
    if summary["world_size"] > 1 and not _is_rank_zero():
        return 0  # rank 0 gives the job's status: a failing rank would make torchrun stop rank 0
    skipped = summary["skipped"]
    notes = "".join(
        [
            f", skipped {skipped}" if skipped else "",
            f", {summary['resumed']} done before" if summary["resumed"] else "",
            f" in {summary['world_size']} processes" if summary["world_size"] > 1 else "",
        ]
    )
    print(
        f"{summary['images']} image(s), {summary['videos']} video(s) ({summary['frames']} frames), "
        f"{summary['instances']} instances{notes} -> {summary['out']}"
        + (" [interrupted: outputs so far were written]" if summary["interrupted"] else "")
    )
    if summary["failed"] and not summary["interrupted"]:
        print(
            f"yolact-fast segment: {len(summary['failed'])} input(s) could not be processed "
            f"(run again with --resume to retry them)",
            file=sys.stderr,
        )
    if summary["interrupted"]:
        return INTERRUPTED
    return 1 if summary["failed"] else 0  # an input without complete outputs


def _per_process_device(device):
    from .train.distributed import process_device

    return process_device(device, "--device")


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def run_benchmark(args) -> int:
    from .benchmarking import benchmark, format_table, rows_for_machine

    rows = rows_for_machine(args.device)
    if args.precision:
        rows = [row for row in rows if row[1] in args.precision]
    if args.runtime:
        rows = [row for row in rows if row[0] in args.runtime]
    if not rows:
        raise ValueError(
            f"no benchmark row has --precision {args.precision} and --runtime {args.runtime} on "
            f"{args.device}; the rows are {rows_for_machine(args.device)}"
        )
    rows = benchmark(
        args.weights,
        tuple(args.image_size) if args.image_size else None,
        args.batch,
        args.device,
        args.runs,
        args.threads,
        rows=rows,
        json_path=args.json,
    )
    print(format_table(rows))
    return 0


def run_demo(args) -> int:
    if args.random_weights:
        return run_random_demo(args)
    import yolact_fast as yf
    from .data import synthetic_shapes
    from .files import output_folder
    from .jobs import save_png
    from .visualize import draw

    output_folder(args.out)
    model = yf.load("demo")
    seed = DEMO_SEED if args.seed is None else args.seed
    image, _ = synthetic_shapes(1, seed, (model.config.max_size, model.config.max_size))[0]
    instances = yf.segment(image, model=model)
    shown = instances[instances.scores >= args.draw_threshold]
    save_png(image, os.path.join(args.out, "demo_input.png"))
    path = os.path.join(args.out, "demo.png")
    save_png(draw(image, shown), path)
    found = ", ".join(f"{n} {s:.2f}" for n, s in zip(shown.label_names, shown.scores.tolist()))
    print(
        f"demo model ({model.config.name}): {len(shown)} instance(s) with score >= "
        f"{args.draw_threshold} [{found}] -> {path}"
    )
    return 0


_TRAIN_FLAGS = {
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "seed": "--seed",
    "num_workers": "--workers",
}


def _name_train_flags(message: str) -> str:
    """``TrainOptions.batch_size must be ...`` -> ``--batch-size must be ...``."""
    for field, flag in _TRAIN_FLAGS.items():
        message = message.replace(f"TrainOptions.{field} ", f"{flag} ")
    return message


def run_train(args) -> int:
    """Single-process training, or one process of a ``torchrun`` launch."""
    import torch

    from .data import Augment, open_dataset
    from .files import output_folder
    from .train import TrainOptions, distributed, train

    try:
        options = TrainOptions(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            num_workers=args.workers,
            augment=None if args.no_augment else Augment(),
            amp=args.amp,
            freeze_bn=args.freeze_bn,
        )
    except (TypeError, ValueError) as error:  # name the flag the user typed, not the field
        raise type(error)(_name_train_flags(str(error))) from None
    if args.threads:
        torch.set_num_threads(args.threads)
    output_folder(args.out)
    if args.device:
        distributed.process_device(args.device, "--device")
    timeout_s = distributed.DEFAULT_TIMEOUT_S if args.dist_timeout is None else args.dist_timeout
    joined = distributed.init_from_environment(args.device, timeout_s)
    try:
        main_process = distributed.Processes.current().is_main
        resume = os.path.join(args.out, "last.pt") if args.resume == "auto" else args.resume
        dataset = open_dataset(args.data, args.images)
        skipped = dict(getattr(dataset, "skipped", {}))
        if skipped and main_process:
            print(f"data: skipped {skipped}", file=sys.stderr)
        summary, _ = train(
            args.config,
            dataset,
            args.out,
            options,
            resume=resume,
            progress=show_progress(args),
            backbone_weights=args.backbone_weights,
            device=args.device,
        )
        if main_process:
            print(json.dumps(summary, indent=1))
    finally:
        if joined:
            distributed.shutdown()
    return 0


def run_eval(args) -> int:
    """One process, or one of a ``torchrun`` launch: each rank segments a share of the
    images and rank 0 computes AP from the results of all."""
    import tempfile

    import torch

    import yolact_fast as yf
    from .data import open_dataset
    from .evaluate import evaluate
    from .files import atomic_output, output_folder
    from .train import distributed

    if args.threads:
        torch.set_num_threads(args.threads)
    device = _per_process_device(args.device)
    timeout_s = distributed.DEFAULT_TIMEOUT_S if args.dist_timeout is None else args.dist_timeout
    joined = distributed.init_from_environment(device, timeout_s)
    try:
        main_process = distributed.Processes.current().is_main
        out = output_folder(args.out or ".") if main_process else None
        model = yf.load(args.weights, config=args.config, device=device)
        with tempfile.TemporaryDirectory() as cache:
            # Synthetic data is written as COCO first, so it is read by the same loader as user data.
            dataset = open_dataset(args.data, args.images, cache_dir=cache)
            metrics = evaluate(
                model,
                dataset,
                args.score_threshold,
                progress=show_progress(args),
                precision=args.precision,
                runtime=args.runtime,
            )
    finally:
        if joined:
            distributed.shutdown()
    if not main_process:
        return 0
    results = metrics.pop("results")
    with atomic_output(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f)
    with atomic_output(os.path.join(out, "bbox_results.json"), "w") as f:  # scored with box_scores
        json.dump(metrics.pop("bbox_results"), f)
    metrics["skipped_annotations"] = dict(getattr(dataset, "skipped", {}))
    with atomic_output(os.path.join(out, "metrics.json"), "w") as f:
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
    options = dict(
        nms=args.nms,
        score_threshold=args.score_threshold,
        iou_threshold=args.iou_threshold,
        top_k=args.top_k,
        max_detections=args.max_detections,
    )
    if args.format == "aoti":
        if args.image_size is None or args.network_only:
            raise ValueError("--format aoti needs --image-size H W and exports the whole segment path")
        yf.export.aoti_package(model, args.out, tuple(args.image_size), **options)
    else:
        yf.export.onnx(
            model, args.out, image_size=args.image_size, postprocess=not args.network_only, opset=args.opset, **options
        )
    print(f"{model.config.name} -> {args.out} ({args.format})")
    return 0


def run_random_demo(args) -> int:
    import yolact_fast as yf
    from .configs import get_config
    from .data.synthetic import golden_image
    from .files import output_folder
    from .jobs import save_png
    from .model.weight_rule import rule_weights
    from .visualize import draw

    output_folder(args.out)
    config = get_config(args.random_weights)
    print(
        f"demo: {config.name} with RANDOM weights (deterministic weight rule, seed {RANDOM_DEMO_WEIGHT_SEED}); "
        "this is not a trained model and its detections mean nothing."
    )
    model = yf.load(rule_weights(config, RANDOM_DEMO_WEIGHT_SEED), config=config)
    seed, height, width = DEMO_IMAGE
    image = golden_image(seed if args.seed is None else args.seed, height, width)
    instances = yf.segment(image, model=model)
    save_png(image, os.path.join(args.out, "demo_input.png"))
    path = os.path.join(args.out, "demo_random_weights.png")
    save_png(draw(image, instances[:RANDOM_DEMO_TOP]), path)
    print(f"{len(instances)} instances (top {min(RANDOM_DEMO_TOP, len(instances))} drawn) -> {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
