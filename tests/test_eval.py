"""COCO evaluation against pycocotools on known predictions; the eval command."""

import json

import numpy as np
import pytest
import torch

import yolact_fast as yf
from yolact_fast.configs import SHAPE_CLASSES
from yolact_fast.data import CocoDataset, synthetic_shapes, write_coco
from inputs import perfect_results
from yolact_fast.data.rle import encode as rle_encode
from yolact_fast.evaluate import coco_eval, evaluate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    path = write_coco(synthetic_shapes(4, seed=11, size=(64, 64)), str(root), SHAPE_CLASSES)
    return CocoDataset(str(root / "images"), path)


def test_perfect_predictions_give_ap_1(dataset):
    results = perfect_results(dataset)
    assert len(results) == len(dataset.coco.anns)
    for iou_type in ("bbox", "segm"):
        stats = coco_eval(dataset.coco, results, iou_type, dataset.image_ids)
        assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)


def _single(tmp_path, gt_box, det_box):
    """One image, one ground-truth box (mask = box), one detection (mask = box)."""

    def rle(box):
        m = np.zeros((1, 100, 100), bool)
        x, y, w, h = box
        m[0, y : y + h, x : x + w] = True
        return rle_encode(m)[0]

    (tmp_path / "images").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": 100, "width": 100}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": list(gt_box),
                "area": gt_box[2] * gt_box[3],
                "iscrowd": 0,
                "segmentation": rle(gt_box),
            }
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "a.json").write_text(json.dumps(data))
    ds = CocoDataset(str(tmp_path / "images"), str(tmp_path / "a.json"))
    det = [{"image_id": 1, "category_id": 1, "bbox": list(det_box), "score": 0.9, "segmentation": rle(det_box)}]
    return ds, det


def test_known_iou_gives_hand_computed_ap(tmp_path):
    # IoU = 40*50 / (40*40 + 40*50 - 40*40)... ground truth 40x40, detection 40x50 covering it:
    # IoU = 1600 / 2000 = 0.8 -> matched at thresholds 0.50..0.80 (7 of 10) -> AP 0.7
    ds, det = _single(tmp_path, (10, 10, 40, 40), (10, 10, 40, 50))
    for iou_type in ("bbox", "segm"):
        stats = coco_eval(ds.coco, det, iou_type)
        assert stats["AP"] == pytest.approx(0.7, abs=1e-6), iou_type
        assert stats["AP50"] == pytest.approx(1.0) and stats["AP75"] == pytest.approx(1.0)


def test_known_iou_below_half_gives_zero(tmp_path):
    ds, det = _single(tmp_path, (10, 10, 40, 40), (10, 10, 40, 90))  # IoU 1600/3600 < 0.5
    assert coco_eval(ds.coco, det, "bbox")["AP"] == 0.0


def test_no_results_give_zero(dataset):
    stats = coco_eval(dataset.coco, [], "segm")
    assert stats["AP"] == 0.0
    with pytest.raises(ValueError, match="iou_type"):
        coco_eval(dataset.coco, [], "keypoints")


def test_evaluate_runs_the_model(dataset):
    model = yf.Yolact(
        yf.configs.yolact_demo.replace(
            backbone=yf.configs.BackboneConfig("resnet_basic", (1, 1, 1, 1), (1, 2, 3), (8, 16, 32, 64), width=8),
            max_size=64,
            fpn_features=16,
            proto_width=16,
            mask_dim=8,
        )
    )
    metrics = evaluate(model, dataset)
    assert metrics["images"] == 4 and metrics["unreadable"] == 0
    assert set(metrics["bbox"]) >= {"AP", "AP50", "AP75"} and 0 <= metrics["segm"]["AP"] <= 1
    assert all(r["category_id"] in dataset.category_ids for r in metrics["results"])
    coco_model = yf.Yolact(yf.configs.yolact_demo.replace(class_names=("a", "b")))
    with pytest.raises(ValueError, match="2 classes but the dataset has 5"):
        evaluate(coco_model, dataset)


def test_instances_to_coco_round_trip_scores_perfectly(dataset):
    """Ground truth wrapped as Instances and exported with to_coco evaluates to AP 1."""
    results = []
    for index in range(len(dataset)):
        image, target = dataset[index]
        inst = yf.Instances(
            target["boxes"], torch.ones(len(target["labels"])), target["labels"], target["masks"], SHAPE_CLASSES
        )
        results += inst.to_coco(int(target["image_id"]), dataset.category_ids)
    assert coco_eval(dataset.coco, results, "segm")["AP"] == pytest.approx(1.0)
    assert coco_eval(dataset.coco, results, "bbox")["AP"] == pytest.approx(1.0)


def test_to_coco_refuses_too_few_category_ids(dataset):
    _, target = dataset[0]
    inst = yf.Instances(
        target["boxes"], torch.ones(len(target["labels"])), target["labels"], target["masks"], SHAPE_CLASSES
    )
    with pytest.raises(ValueError, match="category_ids has 2 entries for 5 classes"):
        inst.to_coco(1, category_ids=[1, 2])
    assert len(inst.to_coco(1, category_ids=range(1, 6))) == len(inst)
