"""``--data`` arguments of the command line: COCO json files, directories, synthetic shapes."""

from __future__ import annotations

import math
import os
from typing import Optional, Tuple, Union

from .coco import CocoDataset
from .synthetic import MAX_IMAGES, MAX_PIXELS, SyntheticShapes

SYNTHETIC_PREFIX = "synthetic:"
MAX_SIDE = math.isqrt(MAX_PIXELS)


def parse_synthetic(spec: str) -> Optional[Tuple[int, int, int]]:
    """ "synthetic:N[:SEED[:SIZE]]" -> (N, SEED, SIZE) (defaults seed 0, size 256), else None."""
    if not spec.startswith(SYNTHETIC_PREFIX):
        return None
    parts = spec[len(SYNTHETIC_PREFIX) :].split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if not 1 <= len(values) <= 3 or values[0] < 1 or min(values) < 0:
        raise ValueError(f"bad synthetic data spec {spec!r}; expected synthetic:N[:SEED[:SIZE]]")
    n, seed, size = (values + [0, 256][len(values) - 1 :])[:3]
    if n > MAX_IMAGES or not 16 <= size <= MAX_SIDE:
        raise ValueError(
            f"bad synthetic data spec {spec!r}: N must be at most {MAX_IMAGES} and SIZE in [16, {MAX_SIDE}]"
        )
    return n, seed, size


def open_dataset(
    spec: str, images: Optional[str] = None, cache_dir: Optional[str] = None
) -> Union[CocoDataset, SyntheticShapes]:
    """A dataset from a ``--data`` argument.

    - ``synthetic:N[:SEED[:SIZE]]``: N synthetic-shape images (SIZE x SIZE). With
      ``cache_dir``, they are first written as a COCO dataset there and read back through
      :class:`CocoDataset` (evaluation does this, so both paths share one loader);
    - a COCO json file (images in ``images``, default: the json's directory, or its
      ``images/`` subdirectory if that exists);
    - a directory holding ``annotations.json`` and ``images/`` (as written by ``write_coco``).
    """
    synthetic = parse_synthetic(spec)
    if synthetic is not None:
        n, seed, size = synthetic
        dataset = SyntheticShapes(n, seed, (size, size))
        if cache_dir is None:
            return dataset
        from .coco import write_coco

        json_path = write_coco(dataset, cache_dir, dataset.class_names)
        return CocoDataset(os.path.join(cache_dir, "images"), json_path)
    if os.path.isdir(spec):
        json_path = os.path.join(spec, "annotations.json")
        if not os.path.isfile(json_path):
            raise FileNotFoundError(f"{spec!r} is a directory without annotations.json")
    elif os.path.isfile(spec):
        json_path = spec
    else:
        raise FileNotFoundError(f"data not found: {spec!r} (a COCO json, a directory, or synthetic:N)")
    if images is None:
        base = os.path.dirname(os.path.abspath(json_path))
        images = os.path.join(base, "images") if os.path.isdir(os.path.join(base, "images")) else base
    return CocoDataset(images, json_path)
