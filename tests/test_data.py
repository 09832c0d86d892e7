"""Datasets: synthetic shapes, the COCO writer and loader, data specs, bad input."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from yolact_fast.configs import SHAPE_CLASSES
from yolact_fast.data import (
    Augment,
    CocoDataset,
    expand,
    mirror,
    open_dataset,
    random_crop,
    synthetic_shapes,
    write_coco,
)
from yolact_fast.data.transforms import mask_boxes, photometric_distort
from yolact_fast.data.spec import parse_synthetic


def test_mask_boxes_are_the_extents_with_exclusive_ends():
    masks = torch.rand(40, 9, 13, generator=torch.Generator().manual_seed(0)) < 0.05
    masks[0] = False
    masks[0, 4, 7] = True  # one pixel
    masks[1] = True  # everything
    masks[2] = False
    masks[2, :, 12] = True  # the last column
    masks = masks[masks.flatten(1).any(1)]
    expected = []
    for m in masks:
        rows, cols = m.any(1).nonzero().flatten().tolist(), m.any(0).nonzero().flatten().tolist()
        expected.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
    assert torch.equal(mask_boxes(masks), torch.tensor(expected, dtype=torch.float32))
    assert mask_boxes(torch.zeros(0, 9, 13, dtype=torch.bool)).shape == (0, 4)


def test_synthetic_shapes_layout_and_consistency():
    data = synthetic_shapes(6, seed=3, size=(96, 128))
    assert len(data) == 6
    labels = set()
    for image, target in data:
        assert image.dtype == torch.uint8 and image.shape == (3, 96, 128)
        m = target["masks"].shape[0]
        assert m >= 1
        assert target["masks"].dtype == torch.bool and target["masks"].shape == (m, 96, 128)
        assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
        assert target["masks"].flatten(1).any(1).all()
        assert torch.equal(target["boxes"], mask_boxes(target["masks"]))
        assert ((target["labels"] >= 0) & (target["labels"] < len(SHAPE_CLASSES))).all()
        # visible masks never overlap: later shapes occlude earlier ones
        assert target["masks"].sum(0).max() <= 1
        labels |= set(target["labels"].tolist())
    assert len(labels) >= 3


def test_synthetic_shapes_deterministic_per_seed():
    a, b, c = synthetic_shapes(3, 7), synthetic_shapes(3, 7), synthetic_shapes(3, 8)
    for (ia, ta), (ib, tb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(ta["masks"], tb["masks"])
    assert not torch.equal(a[0][0], c[0][0])
    assert torch.equal(a[2][0], synthetic_shapes(10, 7)[2][0])  # item i depends on (seed, i) only


def test_synthetic_shapes_bad_arguments():
    for kwargs in ({"n": -1}, {"n": 2, "seed": -1}, {"n": 2, "size": (8, 8)}):
        with pytest.raises(ValueError):
            synthetic_shapes(**kwargs)
    with pytest.raises(IndexError):
        synthetic_shapes(2, 0)[2]


def test_write_coco_round_trip(tmp_path):
    samples = list(synthetic_shapes(3, seed=1, size=(64, 80)))
    path = write_coco(samples, str(tmp_path), SHAPE_CLASSES)
    dataset = CocoDataset(str(tmp_path / "images"), path)
    assert len(dataset) == 3 and dataset.class_names == SHAPE_CLASSES and not dataset.skipped
    for (image, target), (image2, target2) in zip(samples, dataset):
        assert torch.equal(image, image2)
        assert torch.equal(target["masks"], target2["masks"])
        assert torch.equal(target["labels"], target2["labels"])
        assert torch.allclose(target["boxes"], target2["boxes"])
        assert target2["crowd_boxes"].shape == (0, 4)


def _write_image(path, h=20, w=30):
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)


def _coco(tmp_path, annotations, images=None, categories=None):
    images = images or [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}]
    for image in images:
        if not (tmp_path / image["file_name"]).exists() and image["file_name"] != "missing.png":
            _write_image(tmp_path / image["file_name"], image["height"], image["width"])
    data = {
        "images": images,
        "annotations": annotations,
        "categories": categories or [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_polygon_rle_and_crowd(tmp_path):
    from pycocotools import mask as mask_utils

    rle_mask = np.zeros((20, 30), np.uint8, order="F")
    rle_mask[2:6, 20:28] = 1
    rle = mask_utils.encode(rle_mask)
    rle["counts"] = rle["counts"].decode("ascii")
    annotations = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 7,
            "bbox": [0, 0, 10, 10],
            "iscrowd": 0,
            "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]],
            "area": 100,
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 3,
            "bbox": [20, 2, 8, 4],
            "iscrowd": 0,
            "segmentation": rle,
            "area": 32,
        },
        {
            "id": 3,
            "image_id": 1,
            "category_id": 3,
            "bbox": [12, 12, 6, 6],
            "iscrowd": 1,
            "segmentation": rle,
            "area": 36,
        },
    ]
    dataset = CocoDataset(str(tmp_path), _coco(tmp_path, annotations))
    image, target = dataset[0]
    assert image.shape == (3, 20, 30)
    assert target["labels"].tolist() == [1, 0]  # category ids sorted: 3 -> 0, 7 -> 1
    assert target["masks"][0, :10, :10].all() and target["masks"][0].sum() >= 100
    assert torch.equal(target["masks"][1], torch.from_numpy(rle_mask.astype(bool)))
    assert target["boxes"].tolist() == [[0, 0, 10, 10], [20, 2, 28, 6]]
    assert target["crowd_boxes"].tolist() == [[12, 12, 18, 18]]


def test_bad_annotations_are_skipped_and_counted(tmp_path):
    images = [
        {"id": 1, "file_name": "a.png", "height": 20, "width": 30},
        {"id": 2, "file_name": "missing.png", "height": 20, "width": 30},
    ]
    good = [[0, 0, 10, 0, 10, 10, 0, 10]]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "segmentation": good, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0, 4], "segmentation": good, "iscrowd": 0},
        {
            "id": 3,
            "image_id": 1,
            "category_id": 3,
            "bbox": [0, 0, 5, 5],
            "segmentation": _rle(np.zeros((20, 30))),
            "iscrowd": 0,
        },
        {"id": 4, "image_id": 1, "category_id": 99, "bbox": [0, 0, 5, 5], "segmentation": good, "iscrowd": 0},
        {"id": 5, "image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "segmentation": [], "iscrowd": 0},
        {"id": 6, "image_id": 2, "category_id": 3, "bbox": [0, 0, 5, 5], "segmentation": good, "iscrowd": 0},
    ]
    with pytest.warns(UserWarning, match="skipped") as warned:
        dataset = CocoDataset(str(tmp_path), _coco(tmp_path, annotations, images))
    assert dict(dataset.skipped) == {
        "missing_image": 1,
        "zero_area_box": 1,
        "empty_mask": 1,
        "unknown_category": 1,
        "bad_annotation": 1,
    }
    assert "'segmentation' is an empty list of polygons" in str(warned[0].message)
    assert len(dataset) == 1
    _, target = dataset[0]
    assert target["labels"].tolist() == [0]
    # what the loader skips is not in the index COCOeval reads either (an empty polygon list made it raise)
    assert sorted(dataset.coco.anns) == [1] and dataset.coco.imgToAnns[1] == [dataset.coco.anns[1]]


def test_eval_ignores_what_the_loader_skips(tmp_path):
    from yolact_fast.evaluate import coco_eval

    square = [[0, 0, 10, 0, 10, 10, 0, 10]]
    annotations = [
        dict(GOOD_ANNOTATION, segmentation=square),
        dict(GOOD_ANNOTATION, id=2, segmentation=[]),
        dict(GOOD_ANNOTATION, id=3, bbox=[5, 5, 0, 0]),
        dict(GOOD_ANNOTATION, id=4, category_id=99),
        dict(GOOD_ANNOTATION, id=5, segmentation=_rle(np.zeros((20, 30)))),
    ]
    with pytest.warns(UserWarning, match="skipped"):
        dataset = CocoDataset(str(tmp_path), _coco(tmp_path, annotations))
    result = {
        "image_id": 1,
        "category_id": 3,
        "bbox": [0, 0, 10, 10],
        "score": 1.0,
        "segmentation": _rle(np.pad(np.ones((10, 10)), ((0, 10), (0, 20)))),
    }
    for iou_type in ("bbox", "segm"):
        assert coco_eval(dataset.coco, [result], iou_type, dataset.image_ids)["AP"] == pytest.approx(1.0)


def test_images_whose_masks_pass_the_byte_cap_are_skipped(tmp_path, monkeypatch):
    """The cap bounds masks x height x width, checked from the record before any mask is built and
    again from the image file's real size when the item loads."""
    from yolact_fast.data import coco, rle

    images = [
        {"id": 1, "file_name": "a.png", "height": 20, "width": 30},
        {"id": 2, "file_name": "b.png", "height": 20, "width": 30},
    ]
    annotations = (
        [dict(GOOD_ANNOTATION, id=i) for i in range(1, 4)]
        + [dict(GOOD_ANNOTATION, id=i, image_id=2) for i in range(4, 6)]
        + [dict(GOOD_ANNOTATION, id=6, image_id=2, iscrowd=1)]
    )  # crowd regions are no mask
    monkeypatch.setattr(coco, "MAX_MASK_BYTES", 2 * 20 * 30)
    monkeypatch.setattr(rle, "decode", None)  # the checks of __init__ never build a mask
    path = _coco(tmp_path, annotations, images)
    with pytest.warns(UserWarning, match="too_many_masks.*3 instance masks of 20 x 30"):
        dataset = CocoDataset(str(tmp_path), path)
    assert dict(dataset.skipped) == {"too_many_masks": 1} and dataset.image_ids == [2]
    assert sorted(dataset.coco.anns) == [4, 5, 6]
    monkeypatch.undo()
    assert dataset[0][1]["masks"].shape == (2, 20, 30)
    monkeypatch.setattr(coco, "MAX_MASK_BYTES", 2 * 20 * 30)
    _write_image(tmp_path / "b.png", 21, 30)  # the file is larger than its record says
    assert dataset[0] is None


GOOD_POLYGON = [[0, 0, 10, 0, 10, 10, 0, 10]]
GOOD_ANNOTATION = {
    "id": 1,
    "image_id": 1,
    "category_id": 3,
    "bbox": [0, 0, 10, 10],
    "segmentation": GOOD_POLYGON,
    "iscrowd": 0,
}


def _rle(mask):
    from yolact_fast.data import rle

    return rle.encode(np.asarray(mask, bool)[None])[0]


def _loads_with_skips(tmp_path, annotations_text, images=None):
    """CocoDataset of one good annotation followed by ``annotations_text`` (raw JSON, so that
    NaN, 1e400 and other non-standard numbers reach the parser as a user's file would)."""
    images = images or [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}]
    for image in images:
        if isinstance(image, dict) and isinstance(image.get("file_name"), str):
            _write_image(tmp_path / image["file_name"], 20, 30)
    text = '{"images": %s, "categories": [{"id": 3, "name": "a"}], "annotations": [%s, %s]}' % (
        json.dumps(images),
        json.dumps(GOOD_ANNOTATION),
        annotations_text,
    )
    (tmp_path / "ann.json").write_text(text)
    with pytest.warns(UserWarning, match="skipped") as warned:
        dataset = CocoDataset(str(tmp_path), str(tmp_path / "ann.json"))
    return dataset, next(str(w.message) for w in warned if "skipped" in str(w.message))


def _annotation(**changes):
    record = {**GOOD_ANNOTATION, "id": 2, **changes}
    return json.dumps({k: v for k, v in record.items() if v != "<drop>"})


@pytest.mark.parametrize(
    "text,field",
    [
        (_annotation(segmentation=[[0, 0, "NaN", 0, 10, 10]]).replace('"NaN"', "NaN"), "polygon 0"),
        (_annotation(segmentation=[[0, 0, 1e30, 0, 10, 10]]), "polygon 0"),
        (_annotation(segmentation=[[0, 0, 10, 0, 10, 10, 0, -1e9]]), "polygon 0"),
        (_annotation(segmentation=[[0, 0, 10, 10]]), "polygon 0"),  # pycocotools reads 4 numbers as a box
        (_annotation(segmentation=[5]), "polygon 0"),
        (_annotation(segmentation="abc"), "'segmentation'"),
        (_annotation(bbox=[0, 0, 1, 1]).replace("[0, 0, 1, 1]", "[0, 0, 1e400, 1]"), "'bbox'"),
        (_annotation(bbox=[0, 0, 5]), "'bbox'"),
        (_annotation(bbox=["0", 0, 5, 5]), "'bbox'"),
        (_annotation(bbox=[0, 0, 5e9, 5]), "'bbox'"),
        (_annotation(bbox="<drop>"), "'bbox'"),
        (_annotation(image_id="<drop>"), "'image_id'"),
        (_annotation(id="<drop>"), "'id'"),
        (_annotation(category_id="<drop>"), "'category_id'"),
        (_annotation(category_id="3"), "'category_id'"),
        (_annotation(id=2.5), "'id'"),
        (_annotation(image_id=True), "'image_id'"),
        (_annotation(id=2**64), "'id'"),
        (_annotation(image_id=9), "names no (valid) image"),
        (_annotation(id=1), "used by an earlier annotation"),
        (_annotation(iscrowd="yes"), "'iscrowd'"),
        (_annotation(area="big"), "'area'"),
        ('"not an object"', "not an object"),
        ("null", "not an object"),
        ("[1, 2]", "not an object"),
        (_annotation(segmentation={"size": [20, 30], "counts": [5, 10**9]}), "RLE"),
        (_annotation(segmentation={"size": [20, 30], "counts": [-5, 605]}), "RLE"),
        (_annotation(segmentation={"size": [2000, 3000], "counts": [6000000]}), "RLE size"),
        (_annotation(segmentation={"size": [20, 30], "counts": "~~~~"}), "RLE counts"),
        (_annotation(segmentation={"size": [20, 30], "counts": "0n"}), "RLE counts"),  # 'n' continues
        (_annotation(segmentation={"size": [20, 30], "counts": _rle(np.ones((10, 61)))["counts"]}), "RLE"),
        (_annotation(segmentation={"size": [20, 30], "counts": None}), "RLE counts"),
    ],
)
def test_malformed_annotations_are_skipped_counted_and_named(tmp_path, text, field):
    dataset, message = _loads_with_skips(tmp_path, text)
    assert dict(dataset.skipped) == {"bad_annotation": 1}
    assert "annotation #1" in message and field in message and "ann.json" in message
    image, target = dataset[0]  # the good annotation still loads
    assert target["labels"].tolist() == [0] and target["masks"][0, :10, :10].all()


@pytest.mark.parametrize(
    "image,field",
    [
        ({"id": 2, "file_name": "b.png", "height": 10**6, "width": 10**6}, "MAX_IMAGE_PIXELS"),
        ({"id": 2, "file_name": "b.png", "height": 0, "width": 30}, "'height'"),
        ({"id": 2, "file_name": "b.png", "height": 20, "width": -3}, "'width'"),
        ({"id": 2, "file_name": "b.png", "height": "20", "width": 30}, "'height'"),
        ({"id": 2, "file_name": "b.png", "height": 20.5, "width": 30}, "'height'"),
        ({"id": 2, "file_name": None, "height": 20, "width": 30}, "'file_name'"),
        ({"id": 2, "file_name": 7, "height": 20, "width": 30}, "'file_name'"),
        ({"id": "2", "file_name": "b.png", "height": 20, "width": 30}, "'id'"),
        ({"file_name": "b.png", "height": 20, "width": 30}, "'id'"),
        ("b.png", "not an object"),
        ({"id": 1, "file_name": "b.png", "height": 20, "width": 30}, "used by an earlier image"),
    ],
)
def test_malformed_image_records_are_skipped_with_their_annotations(tmp_path, image, field):
    images = [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}, image]
    dataset, message = _loads_with_skips(tmp_path, _annotation(image_id=2), images)
    assert dict(dataset.skipped) == {"bad_image_record": 1, "bad_annotation": 1}
    assert "image #1" in message and field in message
    assert dataset.image_ids == [1] and dataset[0][1]["labels"].tolist() == [0]


@pytest.mark.parametrize(
    "categories,message",
    [
        ([], "'categories' is empty"),
        (["a"], "category #0 is a str"),
        ([{"id": "3", "name": "a"}], "category #0: 'id' must be an integer"),
        ([{"id": 3}], "category #0 (id 3): 'name'"),
        ([{"id": 3, "name": "a"}, {"id": 3, "name": "b"}], "category #1: 'id' 3 is used"),
        ([{"id": i, "name": str(i)} for i in range(1 << 16)], "'categories' has 65536 records"),
    ],
)
def test_malformed_categories_are_an_error_naming_file_and_record(tmp_path, categories, message):
    path = _coco(tmp_path, [GOOD_ANNOTATION])
    data = json.loads(open(path).read())
    data["categories"] = categories
    open(path, "w").write(json.dumps(data))
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        CocoDataset(str(tmp_path), path)
    assert "ann.json" in str(error.value)


def test_missing_iscrowd_and_area_are_filled_for_cocoeval(tmp_path):
    from yolact_fast.evaluate import coco_eval

    annotation = {k: v for k, v in GOOD_ANNOTATION.items() if k != "iscrowd"}
    dataset = CocoDataset(str(tmp_path), _coco(tmp_path, [annotation], categories=[{"id": 3, "name": "a"}]))
    assert dataset.coco.anns[1]["iscrowd"] == 0 and dataset.coco.anns[1]["area"] == 100
    result = {"image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 1.0}
    assert coco_eval(dataset.coco, [result], "bbox")["AP"] == pytest.approx(1.0)


def test_rle_string_counts_match_pycocotools():
    from pycocotools import mask as mask_utils
    from yolact_fast.data import rle

    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        mask = rng.random((h, w)) < rng.random()
        encoded = rle.encode(mask[None])[0]
        counts = rle.string_counts(encoded["counts"])
        runs = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        assert runs["counts"].decode("ascii") == encoded["counts"] and sum(counts) == h * w
        assert np.array_equal(rle.decode(encoded, h, w), mask)
        assert np.array_equal(rle.decode({"size": [h, w], "counts": counts}, h, w), mask)


def test_corrupt_image_loads_as_none(tmp_path):
    path = _coco(tmp_path, [])
    (tmp_path / "a.png").write_bytes(b"not a png at all")
    assert CocoDataset(str(tmp_path), path)[0] is None


def test_missing_or_corrupt_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        CocoDataset(str(tmp_path), str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read annotation file"):
        CocoDataset(str(tmp_path), str(bad))
    for text in ("[" * 100_000 + "]" * 100_000, '{"images": [{"id": ' + "9" * 5000 + "}]}", "\udcff"):
        bad.write_text(text, errors="surrogateescape")
        with pytest.raises(ValueError, match="cannot read annotation file"):
            CocoDataset(str(tmp_path), str(bad))
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="'annotations'"):
        CocoDataset(str(tmp_path), str(bad))
    bad.write_text(json.dumps({"images": [{"id": 1}], "annotations": [], "categories": []}))
    with pytest.raises(ValueError, match="'categories' is empty"):
        CocoDataset(str(tmp_path), str(bad))
    with pytest.raises(FileNotFoundError, match="image directory"):
        CocoDataset(str(tmp_path / "nodir"), _coco(tmp_path, []))


def test_data_specs(tmp_path):
    assert parse_synthetic("synthetic:5") == (5, 0, 256)
    assert parse_synthetic("synthetic:5:3:64") == (5, 3, 64)
    assert parse_synthetic("a.json") is None
    for bad in ("synthetic:", "synthetic:0", "synthetic:x", "synthetic:1:2:3:4", "synthetic:2:-1"):
        with pytest.raises(ValueError, match="synthetic"):
            parse_synthetic(bad)
    assert len(open_dataset("synthetic:2:0:32")) == 2
    cached = open_dataset("synthetic:2:0:32", cache_dir=str(tmp_path / "c"))
    assert isinstance(cached, CocoDataset) and len(cached) == 2
    assert len(open_dataset(str(tmp_path / "c"))) == 2
    assert len(open_dataset(str(tmp_path / "c" / "annotations.json"))) == 2
    with pytest.raises(FileNotFoundError, match="data not found"):
        open_dataset(str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="without annotations.json"):
        open_dataset(str(tmp_path))


def _coloured_sample():
    """Instances painted in unique pure colours, so image and masks can be checked together."""
    image, target = synthetic_shapes(1, seed=2, size=(80, 96))[0]
    image = torch.zeros_like(image)
    for k, mask in enumerate(target["masks"]):
        image[:, mask] = torch.tensor([40 * (k + 1), 255, 0], dtype=torch.uint8)[:, None]
    return image, target


def _check_consistent(image, target):
    assert target["masks"].shape[1:] == image.shape[1:]
    assert torch.equal(target["boxes"], mask_boxes(target["masks"]))
    for mask in target["masks"]:
        values = image[0][mask].unique()
        assert len(values) == 1 and (image[1][mask] == 255).all()


@pytest.mark.parametrize("seed", range(6))
def test_geometric_augmentation_keeps_boxes_and_masks_consistent(seed):
    image, target = _coloured_sample()
    rng = np.random.default_rng(seed)
    image, target = mirror(image, target)
    _check_consistent(image, target)
    image, target = expand(image, target, rng, 2.0)
    assert image.shape[1] >= 80 and image.shape[2] >= 96
    _check_consistent(image, target)
    image, target = random_crop(image, target, rng)
    _check_consistent(image, target)
    image, target = Augment(photometric=False)(image, target, rng)
    _check_consistent(image, target)


def test_mirror_flips_boxes():
    image, target = _coloured_sample()
    flipped, t = mirror(image, target)
    assert torch.equal(flipped, image.flip(-1))
    assert torch.equal(t["boxes"][:, [0, 2]], 96 - target["boxes"][:, [2, 0]])


def test_photometric_distortion_keeps_dtype_and_shape():
    image, _ = _coloured_sample()
    out = photometric_distort(image, np.random.default_rng(0))
    assert out.dtype == torch.uint8 and out.shape == image.shape


def test_golden_image_is_the_golden_cases_image(golden):
    from golden_data import golden_rgb
    from yolact_fast.data.synthetic import golden_image

    height, width = golden["image"].shape[:2]
    assert torch.equal(golden_image(golden["meta"]["image_seed"], height, width), golden_rgb(golden))


# Hostile compressed counts: one count that never ends, a count past 64 bits, millions of
# (zero-length) runs, a huge valid-looking image. Each is refused after a bounded amount of work;
# the subprocess's timeout turns a hang into a failure.
HOSTILE_COUNTS = """
import time
from yolact_fast.data.rle import segmentation_problem, string_counts
ten_mb = 10 ** 7
for counts, (h, w) in [("o" * ten_mb, (64, 64)), ("0" * ten_mb, (64, 64)), ("_" * ten_mb, (64, 64)),
                       ("o" * 13 + "1", (64, 64)), ("o" * ten_mb, (10 ** 4, 10 ** 4))]:
    assert segmentation_problem({{"size": [h, w], "counts": counts}}, h, w) is not None
assert string_counts("o" * 12 + "1") is not None and string_counts("o" * 13 + "1") is None
assert string_counts("1" * 10, max_runs=9) is None and len(string_counts("1" * 10, max_runs=10)) == 10
"""


def test_hostile_rle_strings_are_refused_in_linear_time():
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", HOSTILE_COUNTS.format()], check=True, timeout=120)


def test_class_counts_past_the_head_bound_are_refused_everywhere():
    """One bound (configs.MAX_CLASSES, background included) for COCO files (above), configs
    (whatever dataset names the classes) and checkpoints (test_checkpoint_files)."""
    from yolact_fast.configs import MAX_CLASSES, get_config

    config = get_config("yolact_demo")
    assert config.replace(class_names=("x",) * (MAX_CLASSES - 1)).num_classes == MAX_CLASSES
    with pytest.raises(ValueError, match="class_names has 65536 names.*MAX_CLASSES = 65536"):
        config.replace(class_names=("x",) * MAX_CLASSES)
