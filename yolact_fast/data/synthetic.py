"""Synthetic shapes: images with instance masks, generated deterministically per seed.

Each image has a textured background (a two-colour gradient, stripes and noise) and 1 to
``max_objects`` shapes of the classes in :data:`yolact_fast.configs.SHAPE_CLASSES`, with varied
sizes, aspect ratios, rotations and colours. Later shapes occlude earlier ones; a placement that
would hide more than half of an earlier shape is redrawn, so every annotated instance stays
mostly visible, and masks are the visible parts.
"""

from __future__ import annotations

import math
from typing import Dict, Iterator, Sequence, Tuple

import numpy as np
import torch

from ..configs import SHAPE_CLASSES
from .transforms import mask_boxes

Target = Dict[str, torch.Tensor]

MAX_IMAGES = 10_000_000  # the samplers hold a permutation of the indices (8 bytes each)
MAX_PIXELS = 4096 * 4096  # rendering peaks at about 95 bytes a pixel (measured: 1.5 GiB at 4096 x 4096)
_MAX_TRIES = 20
_MAX_HIDDEN = 0.5  # a new shape may hide at most this fraction of an earlier one
_MIN_PIXELS = 30


class SyntheticShapes(Sequence):
    """``n`` images; item ``i`` depends only on (``seed``, ``i``).

    Items are (uint8 [3,H,W] RGB, {"boxes": float32 [M,4] x1,y1,x2,y2 pixels,
    "labels": int64 [M] into :data:`SHAPE_CLASSES`, "masks": bool [M,H,W]}).
    ``min_size``/``max_size``: range of shape diameters as fractions of min(H, W).
    """

    class_names = SHAPE_CLASSES

    def __init__(
        self,
        n: int,
        seed: int = 0,
        size: Tuple[int, int] = (256, 256),
        max_objects: int = 6,
        min_size: float = 0.1,
        max_size: float = 0.5,
    ):
        if not 0 <= n <= MAX_IMAGES:
            raise ValueError(f"n must be in [0, {MAX_IMAGES}], got {n}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        height, width = size
        if height < 16 or width < 16:
            raise ValueError(f"size must be at least 16x16, got {tuple(size)}")
        if height * width > MAX_PIXELS:
            raise ValueError(
                f"size {tuple(size)} has {height * width} pixels, more than the {MAX_PIXELS} "
                "(4096x4096) synthetic images may have"
            )
        if not 0 < min_size <= max_size <= 1:
            raise ValueError(f"need 0 < min_size <= max_size <= 1, got {min_size}, {max_size}")
        self.n, self.seed, self.size = n, seed, (int(height), int(width))
        self.max_objects, self.min_size, self.max_size = max_objects, min_size, max_size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, Target]:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} images")
        index %= self.n
        rng = np.random.default_rng([self.seed, index])
        return render_image(rng, self.size, self.max_objects, self.min_size, self.max_size)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, Target]]:
        return (self[i] for i in range(self.n))


def synthetic_shapes(n: int, seed: int = 0, size: Tuple[int, int] = (256, 256), **kwargs) -> SyntheticShapes:
    """``n`` synthetic images with instances, deterministic per ``seed`` (see :class:`SyntheticShapes`)."""
    return SyntheticShapes(n, seed, size, **kwargs)


def render_image(
    rng: np.random.Generator, size: Tuple[int, int], max_objects: int = 6, min_size: float = 0.1, max_size: float = 0.5
) -> Tuple[torch.Tensor, Target]:
    """One image and its target from ``rng`` (see :class:`SyntheticShapes`)."""
    height, width = size
    image = _background(rng, height, width)
    background_mean = image.reshape(-1, 3).mean(0)
    visible: list = []  # [mask, label] of placed shapes, visible parts
    num_objects = int(rng.integers(1, max_objects + 1))
    for _ in range(num_objects):
        for _ in range(_MAX_TRIES):
            label = int(rng.integers(len(SHAPE_CLASSES)))
            shape = _shape_mask(rng, label, height, width, min_size, max_size)
            if shape.sum() < _MIN_PIXELS:
                continue
            if all((m & shape).sum() <= _MAX_HIDDEN * m.sum() for m, _ in visible):
                break
        else:
            continue
        colour = _contrasting_colour(rng, background_mean)
        _paint(rng, image, shape, colour)
        for item in visible:
            item[0] = item[0] & ~shape
        visible.append([shape, label])
    visible = [(m, l) for m, l in visible if m.sum() >= _MIN_PIXELS]
    return _to_sample(image, visible)


def _to_sample(image: np.ndarray, visible) -> Tuple[torch.Tensor, Target]:
    height, width = image.shape[:2]
    masks = torch.from_numpy(np.stack([m for m, _ in visible]) if visible else np.zeros((0, height, width), bool))
    target = {
        "boxes": mask_boxes(masks),
        "labels": torch.tensor([l for _, l in visible], dtype=torch.int64),
        "masks": masks,
    }
    return torch.from_numpy(image).permute(2, 0, 1).contiguous(), target


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """uint8 [H,W,3]: gradient between two colours, sinusoidal stripes, and noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    t = np.cos(angle) * xx / width + np.sin(angle) * yy / height
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    image = c0 * (1 - t[..., None]) + c1 * t[..., None]
    stripe_angle = rng.uniform(0, math.pi)
    period = rng.uniform(4, 40)
    phase = (np.cos(stripe_angle) * xx + np.sin(stripe_angle) * yy) * 2 * math.pi / period
    image += rng.uniform(0, 40) * np.sin(phase)[..., None] * rng.uniform(0.3, 1, 3)
    image += rng.normal(0, rng.uniform(2, 20), (height, width, 1)) + rng.normal(0, 4, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random RGB colour at L1 distance > 120 from the background mean, if one is found."""
    colour = rng.uniform(0, 255, 3)
    for _ in range(10):
        if np.abs(colour - background).sum() > 120:
            break
        colour = rng.uniform(0, 255, 3)
    return colour


def _paint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    """Fill ``mask`` with ``colour`` plus a little texture (noise, optional shading), in place."""
    rows, cols = np.nonzero(mask)
    values = colour + rng.normal(0, rng.uniform(1, 12), (len(rows), 1))
    if rng.random() < 0.5:  # linear shading across the shape
        direction = rng.normal(size=2)
        shade = (rows * direction[0] + cols * direction[1]) / max(mask.shape)
        values = values + 40 * (shade - shade.mean())[:, None]
    image[rows, cols] = np.clip(values, 0, 255).astype(np.uint8)


def _shape_mask(
    rng: np.random.Generator, label: int, height: int, width: int, min_size: float, max_size: float
) -> np.ndarray:
    """bool [H,W] mask of one shape of class ``label`` at a random place, size and rotation."""
    from PIL import Image, ImageDraw

    side = min(height, width)
    diameter = side * math.exp(rng.uniform(math.log(min_size), math.log(max_size)))
    aspect = math.exp(rng.uniform(-0.2, 0.2))
    rx, ry = diameter / 2 * aspect, diameter / 2 / aspect
    # Centres may lie slightly outside, so that some shapes are cut by the image border.
    cx = rng.uniform(-0.1 * rx, width + 0.1 * rx)
    cy = rng.uniform(-0.1 * ry, height + 0.1 * ry)
    rotation = rng.uniform(0, 2 * math.pi)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    name = SHAPE_CLASSES[label]
    if name == "circle":
        draw.polygon(_polygon(cx, cy, rx, ry, rotation, [1.0] * 64), fill=1)
    elif name == "square":
        corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        draw.polygon(_transform(corners, cx, cy, rx * 0.8, ry * 0.8, rotation), fill=1)
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, rx, ry, rotation, [1.0] * 3), fill=1)
    elif name == "star":
        draw.polygon(_polygon(cx, cy, rx, ry, rotation, [1.0, rng.uniform(0.38, 0.5)] * 5), fill=1)
    elif name == "ring":
        draw.polygon(_polygon(cx, cy, rx, ry, rotation, [1.0] * 64), fill=1)
        inner = rng.uniform(0.45, 0.65)
        draw.polygon(_polygon(cx, cy, rx * inner, ry * inner, rotation, [1.0] * 64), fill=0)
    else:  # pragma: no cover - SHAPE_CLASSES and this function change together
        raise ValueError(f"no renderer for shape {name!r}")
    return np.asarray(canvas, dtype=bool).copy()


def _polygon(cx, cy, rx, ry, rotation, radii) -> list:
    """Vertices at equal angles with relative ``radii``, scaled by (rx, ry) then rotated."""
    n = len(radii)
    points = [
        (r * math.cos(2 * math.pi * k / n - math.pi / 2), r * math.sin(2 * math.pi * k / n - math.pi / 2))
        for k, r in enumerate(radii)
    ]
    return _transform(points, cx, cy, rx, ry, rotation)


def _transform(points, cx, cy, rx, ry, rotation) -> list:
    cos, sin = math.cos(rotation), math.sin(rotation)
    return [(cx + cos * x * rx - sin * y * ry, cy + sin * x * rx + cos * y * ry) for x, y in points]


def golden_image(seed: int, height: int, width: int) -> torch.Tensor:
    """The synthetic image of the golden data (``make_image`` in docs/golden-data.md): a
    bilinear colour gradient with 4-8 filled ellipses/rectangles and Gaussian noise, as uint8
    [3,H,W] RGB (the golden ``image`` arrays hold it as BGR HxWx3). Also the input of
    ``yolact-fast demo --random-weights``, with the weights of :mod:`yolact_fast.model.weight_rule`."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    corners = rng.uniform(0, 255, size=(4, 3))
    u = (xx / (width - 1))[..., None]
    v = (yy / (height - 1))[..., None]
    img = corners[0] * (1 - u) * (1 - v) + corners[1] * u * (1 - v) + corners[2] * (1 - u) * v + corners[3] * u * v
    for _ in range(int(rng.integers(4, 9))):
        kind = int(rng.integers(0, 2))
        colour = rng.uniform(0, 255, size=3)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.05, 0.3) * width, rng.uniform(0.05, 0.3) * height
        if kind == 0:
            inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        else:
            inside = (np.abs(xx - cx) <= rx) & (np.abs(yy - cy) <= ry)
        img[inside] = colour
    img = img + rng.normal(0.0, 4.0, size=img.shape)
    bgr = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1)))
