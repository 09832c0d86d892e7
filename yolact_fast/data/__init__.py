"""Datasets (COCO json, synthetic shapes), a COCO writer and training augmentation."""

from .coco import SKIP_REASONS, CocoDataset, write_coco
from .spec import open_dataset
from .synthetic import SyntheticShapes, synthetic_shapes
from .transforms import Augment, expand, mirror, photometric_distort, random_crop

__all__ = [
    "CocoDataset",
    "SKIP_REASONS",
    "write_coco",
    "SyntheticShapes",
    "synthetic_shapes",
    "open_dataset",
    "Augment",
    "photometric_distort",
    "expand",
    "random_crop",
    "mirror",
]
