"""Checks of a parsed COCO annotation file, before any of it reaches pycocotools (whose C code
trusts image sizes, polygon coordinates and run lengths).

Problems with the file as a whole (not an object, a list missing, no categories, a malformed
category) raise ValueError naming the file, the record and the field. A malformed image or
annotation record is dropped and counted, with the first example of each reason kept for the
report.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Tuple

from ..configs import MAX_CLASSES
from ..io import MAX_IMAGE_PIXELS
from .rle import is_number, segmentation_problem

INT64_MAX = 2**63 - 1


class CocoChecks:
    """The checked content of one annotation file: ``images``, ``annotations``,
    ``categories`` (new dicts, in file order; annotations get ``iscrowd`` 0 and ``area`` the
    box area when they lack them, as COCOeval needs both), ``skipped`` (reason -> count) and
    ``examples`` (reason -> the first skipped record's description)."""

    def __init__(self, data, path: str):
        self.path = path
        self.skipped: Counter = Counter()
        self.examples: Dict[str, str] = {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a COCO annotation file holds a JSON object, got {type(data).__name__}")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise ValueError(f"{path}: missing or invalid {key!r} list (not a COCO annotation file)")
        self.categories = self._categories(data["categories"])
        self.images = self._images(data["images"])
        sizes = {image["id"]: (image["height"], image["width"]) for image in self.images}
        self.annotations = self._annotations(data["annotations"], sizes)

    def skip(self, reason: str, description: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, description)

    def _categories(self, records: list) -> List[dict]:
        if not records:
            raise ValueError(f"{self.path}: 'categories' is empty: a COCO file needs at least one category")
        if len(records) >= MAX_CLASSES:  # the background class takes one
            raise ValueError(
                f"{self.path}: 'categories' has {len(records)} records; a YOLACT head has at most "
                f"MAX_CLASSES = {MAX_CLASSES} classes, background included ({MAX_CLASSES - 1} categories)"
            )
        categories, ids = [], set()
        for index, record in enumerate(records):
            where = f"{self.path}: category #{index}"
            if not isinstance(record, dict):
                raise ValueError(f"{where} is a {type(record).__name__}, not an object with 'id' and 'name'")
            if not _is_id(record.get("id")):
                raise ValueError(f"{where}: 'id' must be an integer, got {record.get('id')!r}")
            if not isinstance(record.get("name"), str):
                raise ValueError(f"{where} (id {record['id']}): 'name' must be a string, got {record.get('name')!r}")
            if record["id"] in ids:
                raise ValueError(f"{where}: 'id' {record['id']} is used by an earlier category")
            ids.add(record["id"])
            categories.append(dict(record))
        return categories

    def _images(self, records: list) -> List[dict]:
        return [dict(record) for record in self._valid(records, "image", "bad_image_record", _image_problem)]

    def _annotations(self, records: list, sizes: Dict[int, Tuple[int, int]]) -> List[dict]:
        valid = self._valid(records, "annotation", "bad_annotation", lambda record: _annotation_problem(record, sizes))
        return [
            dict(
                record,
                iscrowd=int(record.get("iscrowd", 0)),
                area=record.get("area", record["bbox"][2] * record["bbox"][3]),
            )
            for record in valid
        ]

    def _valid(self, records: list, kind: str, reason: str, problem_of) -> List[dict]:
        """The records without a problem and with an id unused by an earlier one; the others
        are skipped under ``reason``."""
        kept, ids = [], set()
        for index, record in enumerate(records):
            problem = problem_of(record)
            if problem is None and record["id"] in ids:
                problem = f"'id' {record['id']} is used by an earlier {kind}"
            if problem is not None:
                self.skip(reason, f"{kind} #{index}{_id_of(record)}: {problem}")
                continue
            ids.add(record["id"])
            kept.append(record)
        return kept

    def report(self) -> str:
        """ "skipped {reason: count} (e.g. reason: first example; ...)", or "" if nothing was."""
        if not self.skipped:
            return ""
        examples = "; ".join(f"{reason}: {text}" for reason, text in self.examples.items())
        return f"skipped {dict(self.skipped)} (first of each: {examples})"


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -INT64_MAX - 1 <= value <= INT64_MAX


def _id_of(record) -> str:
    return f" (id {record['id']!r})" if isinstance(record, dict) and "id" in record else ""


def _image_problem(record) -> Optional[str]:
    if not isinstance(record, dict):
        return f"is a {type(record).__name__}, not an object"
    if not _is_id(record.get("id")):
        return f"'id' must be an integer, got {record.get('id')!r}"
    if not isinstance(record.get("file_name"), str) or not record["file_name"]:
        return f"'file_name' must be a non-empty string, got {record.get('file_name')!r}"
    for key in ("height", "width"):
        value = record.get(key)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return f"{key!r} must be a positive integer, got {value!r}"
    if record["height"] * record["width"] > MAX_IMAGE_PIXELS:
        return (
            f"'height' x 'width' = {record['height']} x {record['width']} is more than "
            f"yolact_fast.io.MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS} pixels"
        )
    return None


def _annotation_problem(record, sizes: Dict[int, Tuple[int, int]]) -> Optional[str]:
    if not isinstance(record, dict):
        return f"is a {type(record).__name__}, not an object"
    for key in ("id", "image_id", "category_id"):
        if not _is_id(record.get(key)):
            return f"{key!r} must be an integer, got {record.get(key, '<missing>')!r}"
    if record["image_id"] not in sizes:
        return f"'image_id' {record['image_id']} names no (valid) image"
    bbox = record.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
        return f"'bbox' must be 4 finite numbers [x, y, width, height], got {bbox!r}"
    limit = max(sizes[record["image_id"]])
    if not all(-limit <= v <= 2 * limit for v in bbox):
        return f"'bbox' {bbox} reaches beyond one image size around the image (values within [{-limit}, {2 * limit}])"
    if record.get("iscrowd", 0) not in (0, 1):
        return f"'iscrowd' must be 0 or 1, got {record['iscrowd']!r}"
    if "area" in record and not is_number(record["area"]):
        return f"'area' must be a finite number, got {record['area']!r}"
    if "segmentation" in record:
        problem = segmentation_problem(record["segmentation"], *sizes[record["image_id"]])
        if problem is not None:
            return f"'segmentation' {problem}"
    return None
