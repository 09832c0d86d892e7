"""Detection results of one image."""

from __future__ import annotations

import operator

import numbers
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from .configs import COCO_CLASSES

# Official COCO category ids of the 80 classes in COCO_CLASSES order.
COCO_CATEGORY_IDS: Tuple[int, ...] = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    27,
    28,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    38,
    39,
    40,
    41,
    42,
    43,
    44,
    46,
    47,
    48,
    49,
    50,
    51,
    52,
    53,
    54,
    55,
    56,
    57,
    58,
    59,
    60,
    61,
    62,
    63,
    64,
    65,
    67,
    70,
    72,
    73,
    74,
    75,
    76,
    77,
    78,
    79,
    80,
    81,
    82,
    84,
    85,
    86,
    87,
    88,
    89,
    90,
)


class Instances:
    """Instances found in one image of size (H, W).

    boxes float32 [N,4] (x1,y1,x2,y2 in image pixels), scores float32 [N] (descending),
    labels int64 [N] (0-based index into ``class_names``), masks bool [N,H,W].
    ``box_scores`` float32 [N]: the detection (box) scores; YOLACT++ re-scores masks, so there
    ``scores`` = box score x predicted mask IoU. Defaults to ``scores`` (YOLACT models).
    """

    def __init__(
        self,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor,
        class_names: Sequence[str],
        box_scores: Optional[torch.Tensor] = None,
    ):
        n = boxes.shape[0]
        box_scores = scores if box_scores is None else box_scores
        if (
            boxes.shape != (n, 4)
            or scores.shape != (n,)
            or labels.shape != (n,)
            or masks.ndim != 3
            or masks.shape[0] != n
            or box_scores.shape != (n,)
        ):
            raise ValueError(
                f"inconsistent instance shapes: boxes {tuple(boxes.shape)}, scores {tuple(scores.shape)}, "
                f"labels {tuple(labels.shape)}, masks {tuple(masks.shape)}, box_scores {tuple(box_scores.shape)}"
            )
        self.boxes = boxes
        self.scores = scores
        self.labels = labels
        self.masks = masks
        self.class_names = tuple(class_names)
        self.box_scores = box_scores

    @property
    def image_size(self) -> Tuple[int, int]:
        """(H, W) of the image."""
        return tuple(self.masks.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.boxes.device

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def __getitem__(self, index) -> "Instances":
        """Select instances with an int, a slice, an index tensor or a bool mask."""
        if isinstance(index, numbers.Integral) or (
            torch.is_tensor(index) and index.ndim == 0 and not index.is_floating_point()
        ):
            position, count = int(index), len(self)
            if not -count <= position < count:
                raise IndexError(f"instance index {position} out of range for {count} instances")
            position %= count
            index = slice(position, position + 1)
        return Instances(
            self.boxes[index],
            self.scores[index],
            self.labels[index],
            self.masks[index],
            self.class_names,
            self.box_scores[index],
        )

    def to(self, device: Union[str, torch.device]) -> "Instances":
        return Instances(
            self.boxes.to(device),
            self.scores.to(device),
            self.labels.to(device),
            self.masks.to(device),
            self.class_names,
            self.box_scores.to(device),
        )

    @property
    def label_names(self) -> List[str]:
        return [self.class_names[i] for i in self.labels.tolist()]

    def __repr__(self) -> str:
        h, w = self.image_size
        return f"Instances(num={len(self)}, image_size=({h}, {w}), device={self.device})"

    def to_coco(
        self, image_id: int, category_ids: Optional[Sequence[int]] = None, iou_type: str = "segm"
    ) -> List[Dict]:
        """COCO results: one dict per instance with ``image_id``, ``category_id``, ``bbox``
        [x,y,w,h], ``score`` and, for ``iou_type="segm"``, an RLE ``segmentation``
        (pycocotools).

        As the official COCO evaluation, "segm" results are scored with ``scores`` and "bbox"
        results (no segmentation) with ``box_scores``; the two differ for YOLACT++ models only.
        ``category_ids[label]`` gives the category id; by default the official COCO ids for the
        80 COCO classes, else ``label + 1``; ValueError if it has fewer entries than classes.
        """
        from .data import rle

        if iou_type not in ("segm", "bbox"):
            raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
        if category_ids is None:
            category_ids = (
                COCO_CATEGORY_IDS if self.class_names == COCO_CLASSES else range(1, len(self.class_names) + 1)
            )
        image_id = _integer(image_id, "image_id")
        category_ids = [_integer(c, f"category_ids[{i}]") for i, c in enumerate(category_ids)]
        if len(category_ids) < len(self.class_names):
            raise ValueError(
                f"category_ids has {len(category_ids)} entries for {len(self.class_names)} "
                "classes: give one category id per class"
            )
        scores = self.scores if iou_type == "segm" else self.box_scores
        segmentations = rle.encode(self.masks) if iou_type == "segm" else [None] * len(self)
        results = []
        for box, score, label, segmentation in zip(
            self.boxes.cpu().tolist(), scores.cpu().tolist(), self.labels.cpu().tolist(), segmentations
        ):
            x1, y1, x2, y2 = box
            result = {
                "image_id": image_id,
                "category_id": category_ids[label],
                "bbox": [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)],
                "score": float(score),
            }
            if segmentation is not None:
                result["segmentation"] = segmentation
            results.append(result)
        return results


def _integer(value, name: str) -> int:
    """``value`` as an int (Python, numpy or 0-d tensor integers); TypeError naming ``name``
    for anything else (a float such as 1.7 would be truncated silently, a bool is no id)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
