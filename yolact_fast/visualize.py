"""Drawing instances over their image."""

from __future__ import annotations

import colorsys
from typing import List, Tuple

import torch

from .instances import Instances
from .io import ImageLike, as_image_tensor


def palette(n: int) -> List[Tuple[int, int, int]]:
    """``n`` distinct RGB colours (golden-ratio hues), stable for a given index."""
    colours = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def draw(
    image: ImageLike,
    instances: Instances,
    alpha: float = 0.45,
    show_boxes: bool = True,
    show_labels: bool = True,
    box_width: int = 2,
) -> torch.Tensor:
    """Masks, boxes and "label score" texts over ``image`` -> uint8 [3,H,W] RGB (on the CPU).

    Colours follow the class label. Use ``to_pil(draw(...))`` for a PIL image.
    """
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    canvas = as_image_tensor(image)
    if canvas.dtype != torch.uint8:
        canvas = (canvas * 255).round().to(torch.uint8)
    canvas = canvas.cpu()
    if tuple(canvas.shape[1:]) != tuple(instances.image_size):
        raise ValueError(f"image size {tuple(canvas.shape[1:])} does not match the instances' {instances.image_size}")
    if len(instances) == 0:
        return canvas
    instances = instances.to("cpu")
    colours = palette(len(instances.class_names))
    instance_colours = [colours[label] for label in instances.labels.tolist()]
    # Draw the lowest score first so that the best instances end on top.
    order = list(range(len(instances)))[::-1]
    canvas = draw_segmentation_masks(
        canvas, instances.masks[order], alpha=alpha, colors=[instance_colours[i] for i in order]
    )
    if show_boxes:
        labels = None
        if show_labels:
            names = instances.label_names
            labels = [f"{names[i]} {instances.scores[i].item():.2f}" for i in order]
        canvas = draw_bounding_boxes(
            canvas,
            instances.boxes[order],
            labels=labels,
            colors=[instance_colours[i] for i in order],
            width=box_width,
        )
    return canvas


def to_pil(image: torch.Tensor):
    """uint8 [3,H,W] -> PIL image."""
    from PIL import Image

    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
