"""Benchmark mode: every runtime x precision this machine has, each in its own process.

``yf.benchmark(...)`` / ``yolact-fast benchmark`` time :func:`yolact_fast.segment` end to end
(image in, Instances out) for each engine option, next to the official-equivalent
:func:`yolact_fast.segment_eager` and, where installed, the whole exported graph
(:func:`yolact_fast.export.onnx_model`) run by onnxruntime and OpenVINO, which is what a user
would otherwise deploy. Each row reports ms/image (median, batch 1), images/s at batch 1 and
batch B, the peak memory of its process and its agreement with fp32 torch (:func:`agreement`).
A row that cannot run says why in ``error``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .engine.options import EXTERNAL_RUNTIMES, RUNTIME_EXTRAS, native_bf16_cpu, runtime_installed
from .instances import Instances

#: Detections scored above this on either side are the ones :func:`agreement` compares.
AGREEMENT_SCORE = 0.3
#: A pair agrees when it has the same label, scores within this and masks of IoU >= MIN_MASK_IOU.
SCORE_TOLERANCE = 0.05
MIN_MASK_IOU = 0.9
#: Seed of the synthetic-shapes images the rows are compared on (the demo model's held-out
#: evaluation set, ``synthetic:N:1000``, which it was not trained on).
IMAGES_SEED = 1000
BASELINE = ("torch", "fp32")


@dataclasses.dataclass
class Row:
    """One line of the benchmark table (``--json`` writes these as dicts)."""

    runtime: str
    precision: str
    ms_per_image: Optional[float] = None
    images_per_s: Optional[float] = None
    images_per_s_batch: Optional[float] = None
    batch: int = 1
    peak_memory_mb: Optional[float] = None
    agreement: Optional[float] = None
    engine: str = ""
    error: str = ""


def agreement(
    reference: Sequence[Instances],
    other: Sequence[Instances],
    score: float = AGREEMENT_SCORE,
    score_tolerance: float = SCORE_TOLERANCE,
    min_mask_iou: float = MIN_MASK_IOU,
) -> float:
    """Fraction of the detections scored > ``score`` on either side that match one on the other
    side (same label, scores within ``score_tolerance``, mask IoU >= ``min_mask_iou``), over
    images in the same order. 1.0 when neither side has such detections."""
    if len(reference) != len(other):
        raise ValueError(f"reference and other must hold the same images, got {len(reference)} and {len(other)}")
    matched = total = 0
    for ref, oth in zip(reference, other):
        pairs = _matches(ref, oth, score_tolerance, min_mask_iou)
        wanted_ref = set(torch.nonzero(ref.scores > score).flatten().tolist())
        wanted_oth = set(torch.nonzero(oth.scores > score).flatten().tolist())
        # A pair counts once; an unmatched detection above ``score`` on either side counts once.
        pair_hits = [(i, j) for i, j in pairs if i in wanted_ref or j in wanted_oth]
        matched += len(pair_hits)
        total += (
            len(pair_hits) + len(wanted_ref - {i for i, _ in pair_hits}) + len(wanted_oth - {j for _, j in pair_hits})
        )
    return matched / total if total else 1.0


def _matches(ref: Instances, oth: Instances, score_tolerance: float, min_mask_iou: float) -> List[Tuple[int, int]]:
    """Greedy one-to-one pairs (ref index, other index), best mask IoU first."""
    if len(ref) == 0 or len(oth) == 0:
        return []
    a = ref.masks.flatten(1).float()
    b = oth.masks.flatten(1).float()
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1) - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
    ok = (
        (ref.labels[:, None] == oth.labels[None])
        & ((ref.scores[:, None] - oth.scores[None]).abs() <= score_tolerance)
        & (iou >= min_mask_iou)
    )
    candidates = sorted(zip(*torch.nonzero(ok, as_tuple=True)), key=lambda ij: -iou[ij[0], ij[1]].item())
    pairs, used_ref, used_oth = [], set(), set()
    for i, j in candidates:
        i, j = int(i), int(j)
        if i not in used_ref and j not in used_oth:
            pairs.append((i, j))
            used_ref.add(i)
            used_oth.add(j)
    return pairs


def rows_for_machine(device: str) -> List[Tuple[str, str]]:
    """(runtime, precision) of every row on ``device``: the engine's options the device runs,
    the external runtimes whether installed or not (a missing one is a row saying so), then
    the baselines: the official-equivalent eager path and the exported graph."""
    if device.startswith("cuda"):
        precisions = ["fp32", "fp16"] + (["bf16"] if torch.cuda.get_device_capability(device)[0] >= 8 else [])
        # The external runtimes' rows say they run on the CPU only.
        return [("torch", p) for p in precisions] + [(r, "fp32") for r in EXTERNAL_RUNTIMES] + [("eager", "fp32")]
    precisions = ["fp32"] + (["bf16"] if native_bf16_cpu() else [])
    rows = [("torch", p) for p in precisions]
    rows += [("onnxruntime", "fp32")] + [("openvino", p) for p in precisions]
    rows += [("eager", "fp32"), ("onnxruntime-graph", "fp32")] + [("openvino-graph", p) for p in precisions]
    return rows


def benchmark(
    weights: str = "demo",
    image_size: Optional[Tuple[int, int]] = None,
    batch: int = 8,
    device: str = "cpu",
    runs: int = 20,
    threads: Optional[int] = None,
    rows: Optional[Sequence[Tuple[str, str]]] = None,
    json_path: Optional[str] = None,
    images: int = 8,
) -> List[Row]:
    """Run every row (default :func:`rows_for_machine`) in its own process and return them,
    with ``agreement`` against the fp32 torch row on ``images`` synthetic-shapes images."""
    if batch < 1 or runs < 1 or images < 1:
        raise ValueError(f"batch, runs and images must be >= 1, got {batch}, {runs}, {images}")
    rows = list(rows or rows_for_machine(device))
    if BASELINE not in rows:
        rows.insert(0, BASELINE)
    rows.sort(key=lambda row: row != BASELINE)  # the reference first
    results: List[Row] = []
    with tempfile.TemporaryDirectory(prefix="yolact_fast_benchmark_") as folder:
        spec = {
            "weights": weights,
            "image_size": image_size,
            "batch": batch,
            "device": device,
            "runs": runs,
            "threads": threads,
            "images": images,
        }
        detections: Dict[Tuple[str, str], str] = {}
        for runtime, precision in rows:
            path = os.path.join(folder, f"{runtime}-{precision}.pt")
            row = _run_row_process(dict(spec, runtime=runtime, precision=precision, detections=path))
            if not row.error:
                detections[(runtime, precision)] = path
            results.append(row)
        reference = _load_detections(detections.get(BASELINE))
        for row in results:
            path = detections.get((row.runtime, row.precision))
            if reference is not None and path is not None:
                row.agreement = round(agreement(reference, _load_detections(path)), 4)
    if json_path is not None:
        from .files import atomic_output

        with atomic_output(os.fspath(json_path), "w") as file:
            json.dump([dataclasses.asdict(row) for row in results], file, indent=1)
    return results


#: Seconds one row's process may take (engine build, exports and timings included).
ROW_TIMEOUT_S = 3600


def _run_row_process(spec: dict) -> Row:
    command = [sys.executable, "-m", "yolact_fast.benchmarking", json.dumps(spec)]
    failed = Row(spec["runtime"], spec["precision"], batch=spec["batch"])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=ROW_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        failed.error = f"no result within {ROW_TIMEOUT_S} s"
        return failed
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        try:
            return Row(**json.loads(lines[-1]))
        except (ValueError, TypeError) as error:
            failed.error = f"unreadable result ({error}): {lines[-1][:200]}"
            return failed
    last = (done.stderr.strip().splitlines() or ["no message"])[-1]
    failed.error = f"exit status {done.returncode}: {last}"
    return failed


def _load_detections(path: Optional[str]) -> Optional[List[Instances]]:
    if path is None:
        return None
    saved = torch.load(path, weights_only=True)
    return [Instances(d["boxes"], d["scores"], d["labels"], d["masks"], ()) for d in saved]


def run_row(spec: dict) -> Row:
    """One row, in this process (see :func:`benchmark`); writes its detections to
    ``spec["detections"]`` for the agreement."""
    import yolact_fast as yf

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    runtime, precision = spec["runtime"], spec["precision"]
    row = Row(runtime, precision, batch=int(spec["batch"]))
    extra = RUNTIME_EXTRAS.get(runtime.replace("-graph", ""))
    if extra is not None and not runtime_installed(runtime.replace("-graph", "")):
        row.error = f"not installed: pip install 'yolact_fast[{extra[0]}]'"
        return row
    model = yf.load(spec["weights"], device=spec["device"])
    size = tuple(spec["image_size"] or (model.config.max_size, model.config.max_size))
    compare = _images(int(spec["images"]), size)
    run, row.engine = _segmenter(model, runtime, precision)
    timed = compare[0]
    for _ in range(2):  # warm-up (and the engine's build, outside the timings)
        run([timed])
    single = median_ms(lambda: run([timed]), int(spec["runs"]), spec["device"])
    many = median_ms(lambda: run(compare[:1] * row.batch), max(3, int(spec["runs"]) // 4), spec["device"])
    row.ms_per_image = round(single, 3)
    row.images_per_s = round(1e3 / single, 2)
    row.images_per_s_batch = round(1e3 * row.batch / many, 2)
    row.peak_memory_mb = round(_peak_memory_mb(spec["device"]), 1)
    kept = [_kept(instances.to("cpu")) for instances in run(compare)]
    torch.save(kept, spec["detections"])
    return row


def _segmenter(model, runtime: str, precision: str):
    """(images -> list[Instances], engine description) for a row."""
    import yolact_fast as yf

    if runtime == "eager":
        return (lambda images: yf.segment_eager(images, model)), "segment_eager (unfused model, reference ops)"
    if runtime.endswith("-graph"):
        return _exported_graph(model, runtime.replace("-graph", ""), precision)
    run = lambda images: yf.segment(images, model=model, precision=precision, runtime=runtime)  # noqa: E731
    return run, yf.engine_info(model, precision, runtime).network


def _exported_graph(model, runtime: str, precision: str):
    """The whole exported graph (preprocessing, network, post-processing) run by onnxruntime
    or OpenVINO one image at a time, as a user deploying the ONNX file would."""
    from . import export

    if runtime == "onnxruntime":
        segmenter = export.onnxruntime_segmenter(model)
        return (lambda images: [segmenter(image) for image in images]), "exported graph in onnxruntime"
    import openvino as ov

    core = ov.Core()
    graph = core.read_model(export.onnx_model(model).SerializeToString(), b"")
    compiled = core.compile_model(
        graph,
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision],
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        },
    )
    request = compiled.create_infer_request()
    names = model.config.class_names

    def run(images):
        results = []
        for image in images:
            request.infer({"image": image.numpy()})
            boxes, scores, labels, masks = (
                torch.from_numpy(request.get_output_tensor(i).data.copy()) for i in range(4)
            )
            results.append(Instances(boxes, scores, labels, masks, names))
        return results

    return run, "exported graph in OpenVINO"


def _images(count: int, size: Tuple[int, int]) -> List[torch.Tensor]:
    from .data import synthetic_shapes

    shapes = synthetic_shapes(count, IMAGES_SEED, size)
    return [shapes[i][0] for i in range(count)]


def median_ms(call, runs: int, device: str) -> float:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    for _ in range(runs):
        sync()
        start = time.perf_counter()
        call()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _kept(instances: Instances) -> dict:
    """The detections :func:`agreement` can use (score above its threshold minus the
    tolerance), as plain tensors."""
    keep = instances.scores > AGREEMENT_SCORE - SCORE_TOLERANCE
    return {
        "boxes": instances.boxes[keep],
        "scores": instances.scores[keep].float(),
        "labels": instances.labels[keep],
        "masks": instances.masks[keep],
    }


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    header = "| runtime | precision | engine | ms/image | images/s | images/s (batch) | peak MB | agreement |"
    lines = [header, "|" + "---|" * 8]
    for row in rows:
        if row.error:
            lines.append(f"| {row.runtime} | {row.precision} | error: {row.error} | | | | | |")
            continue
        agreement_text = "" if row.agreement is None else f"{100 * row.agreement:.1f}%"
        lines.append(
            f"| {row.runtime} | {row.precision} | {row.engine} | {row.ms_per_image:.1f} | "
            f"{row.images_per_s:.1f} | {row.images_per_s_batch:.1f} (B={row.batch}) | "
            f"{row.peak_memory_mb:.0f} | {agreement_text} |"
        )
    return "\n".join(lines)


def _main(argv: Sequence[str]) -> int:
    """``python -m yolact_fast.benchmarking SPEC``: one row (SPEC as :func:`benchmark` writes it),
    printed as JSON on the last line of stdout; a failure exits non-zero with the reason on
    the last line of stderr."""
    spec = json.loads(argv[0])
    try:
        row = run_row(spec)
    except Exception as error:  # the parent reports it as the row's error
        print(f"{type(error).__name__}: {error}".replace("\n", " "), file=sys.stderr)
        return 1
    print(json.dumps(dataclasses.asdict(row)))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
