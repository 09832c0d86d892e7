"""COCO-format datasets through pycocotools, and a writer from (image, target) samples.

The annotation file is checked before any of it reaches pycocotools (see
:mod:`~yolact_fast.data.coco_checks`): a file that is not COCO, has no categories or a
malformed category raises ValueError naming the file, the record and the field. Invalid
records never reach training: they are skipped at load time and counted in
``CocoDataset.skipped`` (and reported once with a warning that names the first of each kind):

- ``bad_image_record``: an image record that is not an object, or whose ``id``, ``file_name``,
  ``height`` or ``width`` is missing or invalid (sizes are positive integers, at most
  :data:`yolact_fast.io.MAX_IMAGE_PIXELS` pixels); its annotations go with it;
- ``bad_annotation``: an annotation that is not an object, lacks an integer ``id``,
  ``image_id`` or ``category_id``, names no valid image, repeats an ``id``, has a ``bbox``
  that is not 4 finite numbers within one image size of the image, or a ``segmentation``
  that is not decodable (polygon coordinates not finite or far outside the image, RLE size or
  run lengths that do not match the image);
- ``missing_image``: the image file does not exist (the whole image is skipped);
- ``zero_area_box``: a box with width or height <= 0;
- ``empty_mask``: a segmentation that rasterises to no pixel;
- ``unknown_category``: a ``category_id`` not among the file's categories (class out of range);
- ``too_many_masks``: an image whose instance masks would take more than
  :data:`MAX_MASK_BYTES` (masks x height x width bool bytes; the whole image is skipped).

Skipped annotations are dropped from ``CocoDataset.coco``, the index that COCOeval reads, too.

Images that exist but cannot be decoded (corrupt, empty, or above ``MAX_IMAGE_PIXELS``) are
reported by :meth:`CocoDataset.load` returning None (as is an image whose file is larger than its
record and whose masks then pass ``MAX_MASK_BYTES``); the training loop skips them and counts them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..files import atomic_output
from . import rle
from .coco_checks import CocoChecks

Target = Dict[str, torch.Tensor]

SKIP_REASONS = (
    "bad_image_record",
    "bad_annotation",
    "missing_image",
    "zero_area_box",
    "empty_mask",
    "unknown_category",
    "too_many_masks",
)
MAX_MASK_BYTES = 1 << 30  # the bool [M,H,W] instance masks of one item (1 GiB: 64 masks of 4096 x 4096)


class CocoDataset(torch.utils.data.Dataset):
    """Images and instance annotations from a COCO json (polygons, RLE and crowd regions).

    Items are (uint8 [3,H,W] RGB, {"boxes": float32 [M,4] x1,y1,x2,y2 pixels, "labels": int64
    [M] 0-based (categories sorted by id), "masks": bool [M,H,W], "crowd_boxes": float32 [K,4]},
    "image_id": int64 []) or None if the image cannot be decoded. ``iscrowd`` annotations
    become ``crowd_boxes`` (priors mostly inside them are neither positive nor negative).
    Raises FileNotFoundError / ValueError for a missing or unreadable annotation file.
    """

    def __init__(self, image_dir: str, annotation_json: str, warn: bool = True):
        from pycocotools.coco import COCO

        annotation_json = os.fspath(annotation_json)
        if not os.path.isfile(annotation_json):
            raise FileNotFoundError(f"annotation file not found: {annotation_json!r}")
        if not os.path.isdir(image_dir):
            raise FileNotFoundError(f"image directory not found: {image_dir!r}")
        try:
            with open(annotation_json) as f:
                data = json.load(f)
        except (OSError, ValueError, RecursionError) as error:  # ValueError: bad JSON, encoding, huge ints
            raise ValueError(f"cannot read annotation file {annotation_json!r}: {error}") from error
        checks = CocoChecks(data, annotation_json)
        self.coco = COCO()
        self.coco.dataset = {
            "images": checks.images,
            "annotations": checks.annotations,
            "categories": checks.categories,
        }
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()
        self.image_dir = os.fspath(image_dir)
        self.annotation_json = annotation_json
        self.category_ids: List[int] = sorted(self.coco.getCatIds())
        self.class_names: Tuple[str, ...] = tuple(self.coco.cats[c]["name"] for c in self.category_ids)
        self.image_ids: List[int] = []
        for image_id in sorted(self.coco.getImgIds()):
            if os.path.isfile(self._path(image_id)):
                self.image_ids.append(image_id)
            else:
                checks.skip("missing_image", f"image id {image_id}: no file {self._path(image_id)!r}")
        self._label = {c: i for i, c in enumerate(self.category_ids)}
        self._annotations = {i: self._valid_annotations(i, checks) for i in self.image_ids}
        self.image_ids = [i for i in self.image_ids if self._masks_fit(i, checks)]
        self._index_only_kept_annotations()
        self.skipped: Counter = checks.skipped
        if warn and checks.skipped:
            warnings.warn(f"{annotation_json}: {checks.report()}")

    def _path(self, image_id: int) -> str:
        return os.path.join(self.image_dir, self.coco.imgs[image_id]["file_name"])

    def _valid_annotations(self, image_id: int, checks: CocoChecks) -> List[dict]:
        kept = []
        for ann in self.coco.imgToAnns.get(image_id, []):
            x, y, w, h = ann["bbox"]
            where = f"annotation id {ann['id']}"
            if ann["category_id"] not in self._label:
                checks.skip("unknown_category", f"{where}: 'category_id' {ann['category_id']} is no category's id")
            elif not (w > 0 and h > 0):
                checks.skip("zero_area_box", f"{where}: 'bbox' {ann['bbox']} has no area")
            elif "segmentation" in ann and not ann["iscrowd"] and not self._area(ann):
                checks.skip("empty_mask", f"{where}: 'segmentation' covers no pixel")
            else:
                kept.append(ann)
        return kept

    def _masks_fit(self, image_id: int, checks: CocoChecks) -> bool:
        image = self.coco.imgs[image_id]
        count = sum(not ann["iscrowd"] for ann in self._annotations[image_id])
        if _mask_bytes(count, image["height"], image["width"]) <= MAX_MASK_BYTES:
            return True
        checks.skip(
            "too_many_masks",
            f"image id {image_id}: {count} instance masks of {image['height']} x "
            f"{image['width']} pixels are more than MAX_MASK_BYTES = {MAX_MASK_BYTES} bytes",
        )
        return False

    def _index_only_kept_annotations(self) -> None:
        """Rebuilds the COCO index without the annotations the loader skips, which COCOeval
        would otherwise count (and some, such as an empty polygon list, make it raise)."""
        kept = [ann for image_id in self.image_ids for ann in self._annotations[image_id]]
        if len(kept) == len(self.coco.dataset["annotations"]):
            return
        kept_ids = {ann["id"] for ann in kept}
        self.coco.dataset["annotations"] = [a for a in self.coco.dataset["annotations"] if a["id"] in kept_ids]
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()

    def _mask(self, ann: dict, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
        """bool [H,W] of a checked annotation; at ``size`` if given (cropped or zero-padded when
        the image file's size differs from its record's)."""
        image = self.coco.imgs[ann["image_id"]]
        mask = rle.decode(ann["segmentation"], image["height"], image["width"])
        if size is not None and mask.shape != tuple(size):
            resized = np.zeros(size, bool)
            h, w = min(size[0], mask.shape[0]), min(size[1], mask.shape[1])
            resized[:h, :w] = mask[:h, :w]
            mask = resized
        return mask

    def _area(self, ann: dict) -> int:
        image = self.coco.imgs[ann["image_id"]]
        return rle.area(ann["segmentation"], image["height"], image["width"])

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int):
        return self.load(index)

    def load(self, index: int) -> Optional[Tuple[torch.Tensor, Target]]:
        """Item ``index``, or None if its image cannot be decoded."""
        from ..io import read_image

        image_id = self.image_ids[index]
        try:
            image = read_image(self._path(image_id))
        except (ValueError, FileNotFoundError):
            return None
        height, width = image.shape[-2:]
        instances = [ann for ann in self._annotations[image_id] if not ann["iscrowd"]]
        if _mask_bytes(len(instances), height, width) > MAX_MASK_BYTES:
            return None
        crowd = [_corners(ann["bbox"]) for ann in self._annotations[image_id] if ann["iscrowd"]]
        masks = torch.zeros((len(instances), height, width), dtype=torch.bool)
        for mask, ann in zip(masks.numpy(), instances):
            if "segmentation" in ann:
                mask[:] = self._mask(ann, (height, width))
            else:  # boxes only: the box is the mask
                x, y, w, h = ann["bbox"]
                mask[max(int(y), 0) : max(int(np.ceil(y + h)), 0), max(int(x), 0) : max(int(np.ceil(x + w)), 0)] = True
        target = {
            "boxes": torch.tensor([_corners(ann["bbox"]) for ann in instances], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([self._label[ann["category_id"]] for ann in instances], dtype=torch.int64),
            "masks": masks,
            "crowd_boxes": torch.tensor(crowd, dtype=torch.float32).reshape(-1, 4),
            "image_id": torch.tensor(image_id, dtype=torch.int64),
        }
        return image, target


def _corners(bbox: List[float]) -> List[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def _mask_bytes(count: int, height: int, width: int) -> int:
    return count * height * width


def write_coco(
    samples: Iterable[Tuple[torch.Tensor, Target]], out_dir: str, class_names: Sequence[str], image_format: str = "png"
) -> str:
    """Write (image, target) samples as ``out_dir/images/<id>.png`` and
    ``out_dir/annotations.json`` (RLE masks, 1-based category ids; every file written
    atomically); returns the json path."""
    from PIL import Image

    extension = image_format.lower()
    pil_format = Image.registered_extensions().get(f".{extension}")
    if pil_format is None:
        raise ValueError(f"image_format must be a file extension PIL writes (png, jpg, ...), got {image_format!r}")
    image_dir = os.path.join(out_dir, "images")
    images, annotations = [], []
    for image_id, (image, target) in enumerate(samples, start=1):
        file_name = f"{image_id:06d}.{extension}"
        with atomic_output(os.path.join(image_dir, file_name)) as file:
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(file, format=pil_format)
        height, width = image.shape[-2:]
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        masks = target["masks"]
        areas = masks.flatten(1).sum(1).tolist()
        for box, label, area, segmentation in zip(
            target["boxes"].tolist(), target["labels"].tolist(), areas, rle.encode(masks)
        ):
            x1, y1, x2, y2 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float(area),
                    "segmentation": segmentation,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    path = os.path.join(out_dir, "annotations.json")
    with atomic_output(path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return path
