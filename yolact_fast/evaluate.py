"""COCO box and mask AP of a model on a :class:`~yolact_fast.data.CocoDataset` (pycocotools)."""

from __future__ import annotations

import contextlib
import io
import sys
from typing import Dict, List, Optional, Sequence

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def coco_eval(
    coco_gt, results: List[dict], iou_type: str, image_ids: Optional[Sequence[int]] = None, verbose: bool = False
) -> Dict[str, float]:
    """COCOeval summary {"AP", "AP50", ...} of ``results`` ("bbox" or "segm") against
    ``coco_gt`` (a pycocotools COCO). No results give zeros (pycocotools cannot load [])."""
    from pycocotools.cocoeval import COCOeval

    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if not results:
        return {name: 0.0 for name in STAT_NAMES}
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_dt = coco_gt.loadRes([dict(r) for r in results])  # loadRes adds keys in place
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        if image_ids is not None:
            evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # pycocotools reports -1 where a category/area has no ground truth.
    return {name: float(max(v, 0.0)) if v >= 0 else -1.0 for name, v in zip(STAT_NAMES, evaluator.stats)}


def predict(
    model,
    dataset,
    score_threshold: float = 0.05,
    progress: bool = False,
    precision: str = "fp32",
    runtime: str = "torch",
) -> tuple:
    """({"segm": COCO results (boxes and masks, scored with ``scores``), "bbox": box results
    scored with ``box_scores``} of ``model`` on every image of ``dataset``, number of unreadable
    images). The two scores differ for YOLACT++ (re-scored masks), as in the official eval.
    ``precision`` and ``runtime`` as in :func:`yolact_fast.segment`.

    Under torchrun (a joined process group) each rank segments images ``rank, rank +
    world_size, ...`` and rank 0 returns the results of all, in image order (the other ranks
    return None)."""
    from .train.distributed import Processes

    if len(model.config.class_names) != len(dataset.category_ids):
        raise ValueError(
            f"the model has {len(model.config.class_names)} classes but the dataset has "
            f"{len(dataset.category_ids)} categories"
        )
    processes = Processes.current()
    share = range(processes.rank, len(dataset), processes.world_size)
    mine = _predict_images(
        model,
        dataset,
        share,
        progress and processes.is_main,
        score_threshold=score_threshold,
        precision=precision,
        runtime=runtime,
    )
    gathered = processes.gather(mine)
    processes.barrier()  # no rank leaves the group while rank 0 still completes the gather
    if gathered is None:
        return None
    per_image = sorted((item for part in gathered for item in part), key=lambda item: item[0])
    results, unreadable = {"segm": [], "bbox": []}, 0
    for _, image_results in per_image:
        if image_results is None:
            unreadable += 1
            continue
        for iou_type, kind_results in results.items():
            kind_results += image_results[iou_type]
    return results, unreadable


def _predict_images(model, dataset, indices, progress, **options) -> list:
    """[(index, {"segm": [...], "bbox": [...]} or None when unreadable)] of images ``indices``
    (``options``: :func:`yolact_fast.segment`'s keywords)."""
    from tqdm import tqdm

    from .segment import segment

    predictions = []
    for index in tqdm(indices, desc="eval", unit="img", disable=not progress, file=sys.stderr):
        sample = dataset.load(index)
        if sample is None:
            predictions.append((index, None))
            continue
        image, target = sample
        instances = segment(image, model=model, **options)
        image_id = int(target["image_id"])
        predictions.append(
            (
                index,
                {
                    iou_type: instances.to_coco(image_id, dataset.category_ids, iou_type)
                    for iou_type in ("segm", "bbox")
                },
            )
        )
    return predictions


def evaluate(
    model,
    dataset,
    score_threshold: float = 0.05,
    progress: bool = False,
    precision: str = "fp32",
    runtime: str = "torch",
) -> Optional[Dict[str, object]]:
    """{"bbox": stats, "segm": stats, "results": COCO results (boxes and masks),
    "bbox_results": box results, "images": n, "unreadable": n} (see :func:`predict`). Under
    torchrun the images are shared out over the ranks and AP is computed once, on rank 0,
    from the results of all; the other ranks return None."""
    predicted = predict(model, dataset, score_threshold, progress, precision, runtime)
    if predicted is None:
        return None
    results, unreadable = predicted
    image_ids = dataset.image_ids
    return {
        "bbox": coco_eval(dataset.coco, results["bbox"], "bbox", image_ids),
        "segm": coco_eval(dataset.coco, results["segm"], "segm", image_ids),
        "results": results["segm"],
        "bbox_results": results["bbox"],
        "images": len(image_ids) - unreadable,
        "unreadable": unreadable,
    }
