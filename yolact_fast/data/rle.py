"""COCO masks in one place: run-length encoding and decoding through pycocotools, and the
checks that keep malformed segmentations out of its C code (which trusts sizes and counts)."""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import numpy as np
import torch


def encode(masks) -> List[Dict]:
    """bool [N,H,W] masks (tensor or array) -> N COCO RLEs {"size": [H, W], "counts": str}."""
    from pycocotools import mask as mask_utils

    masks = masks.cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if masks.shape[0] == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")} for rle in rles]


def decode(segmentation, height: int, width: int) -> np.ndarray:
    """bool [H,W] of a COCO segmentation (polygons, compressed or uncompressed RLE) that
    :func:`segmentation_problem` accepts for an image of ``height`` x ``width``."""
    from pycocotools import mask as mask_utils

    return mask_utils.decode(_compressed(segmentation, height, width)).astype(bool)


def area(segmentation, height: int, width: int) -> int:
    """The pixel count of :func:`decode`'s mask, from the run lengths (no [H,W] mask is built)."""
    from pycocotools import mask as mask_utils

    return int(mask_utils.area(_compressed(segmentation, height, width)))


def _compressed(segmentation, height: int, width: int) -> Dict:
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return {"size": [height, width], "counts": segmentation["counts"].encode("ascii")}


def segmentation_problem(segmentation, height: int, width: int) -> Optional[str]:
    """Why ``segmentation`` cannot be decoded safely for an image of ``height`` x ``width``, or
    None. Polygons: a non-empty list of lists of at least 6 (an even number of) finite coordinates within one
    image size of the image; RLE: {"size": [height, width], "counts": non-negative run
    lengths (a list, or a COCO-compressed string) summing to height * width}."""
    if isinstance(segmentation, list):
        if not segmentation:
            return "is an empty list of polygons"
        limit = max(height, width)
        for index, polygon in enumerate(segmentation):
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
                return f"polygon {index} is not a list of at least 3 (x, y) pairs"
            if not all(is_number(v) and -limit <= v <= 2 * limit for v in polygon):
                return f"polygon {index} has a coordinate that is not a finite number within [{-limit}, {2 * limit}]"
        return None
    if not isinstance(segmentation, dict):
        return f"is a {type(segmentation).__name__}, not a list of polygons or an RLE object"
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if not (isinstance(size, list) and size == [height, width]):
        return f"RLE size {size!r} is not the image's [height, width] = {[height, width]}"
    if isinstance(counts, str):
        # a mask of height * width pixels has at most height * width + 1 runs (only the first may be empty)
        counts = string_counts(counts, max_runs=height * width + 1)
        if counts is None:
            return "RLE counts is not a valid COCO-compressed string (or has more runs than pixels)"
    elif not (isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in counts)):
        return "RLE counts is neither a string nor a list of integers"
    if len(counts) > height * width + 1:
        return f"RLE has more run lengths than the image's {height * width} pixels + 1"
    if any(c < 0 for c in counts) or sum(counts) != height * width:
        return f"RLE run lengths are negative or do not sum to height * width = {height * width}"
    return None


MAX_COUNT_GROUPS = 13  # 13 groups of 5 bits cover a 64-bit count, pycocotools' widest


def string_counts(counts: str, max_runs: Optional[int] = None) -> Optional[List[int]]:
    """Run lengths of a COCO-compressed RLE string (pycocotools' ``rleFrString``: 5-bit groups
    of characters '0'..'o', a sign bit, each count after the second relative to the one two
    before), or None if the string is malformed: a count longer than 13 groups (64 bits) or,
    given ``max_runs``, more run lengths than that. Linear in the string's length."""
    values: List[int] = []
    position = 0
    while position < len(counts):
        if max_runs is not None and len(values) == max_runs:
            return None
        value, shift, more = 0, 0, True
        while more:
            if position == len(counts) or shift == 5 * MAX_COUNT_GROUPS:
                return None
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                return None
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position, shift = position + 1, shift + 5
            if not more and code & 0x10:
                value -= 1 << shift
        if len(values) > 2:
            value += values[-2]
        values.append(value)
    return values


def is_number(value) -> bool:
    """A finite JSON number (not a bool)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False
