"""Image inputs: validation and conversion to CHW tensors."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Union

import numpy as np
import torch

if TYPE_CHECKING:
    import PIL.Image

ImageLike = Union[torch.Tensor, np.ndarray, "PIL.Image.Image", str, os.PathLike]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def read_image(path: Union[str, os.PathLike]) -> torch.Tensor:
    """A file -> uint8 [3,H,W] RGB. FileNotFoundError if missing, ValueError if unreadable."""
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path!r}")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ValueError(f"cannot read image {path!r}: {error}") from error
    return pil_to_tensor(image)


def pil_to_tensor(image) -> torch.Tensor:
    """PIL image (any mode) -> uint8 [3,H,W] RGB."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def as_image_tensor(image: ImageLike) -> torch.Tensor:
    """Any supported image -> validated [3,H,W] tensor: uint8 RGB, or float32 RGB in [0,1].

    Supported: uint8 or float [3,H,W] torch tensors, numpy uint8 HxWx3 RGB, PIL images, paths.
    Raises TypeError for unsupported types/dtypes, ValueError for bad shapes or values.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if _is_pil(image):
        return pil_to_tensor(image)
    if isinstance(image, np.ndarray):
        return _from_numpy(image)
    if isinstance(image, torch.Tensor):
        return check_image_tensor(image)
    raise TypeError(
        "image must be a torch.Tensor [3,H,W], a numpy HxWx3 uint8 array, a PIL image or a "
        f"file path, got {type(image).__name__}"
    )


def _is_pil(obj) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, Image.Image)


def _from_numpy(array: np.ndarray) -> torch.Tensor:
    if array.dtype != np.uint8:
        raise TypeError(f"numpy images must be uint8 HxWx3 RGB, got dtype {array.dtype}")
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"numpy images must be HxWx3 (RGB), got shape {tuple(array.shape)}")
    return check_image_tensor(torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1))


def check_image_tensor(image: torch.Tensor) -> torch.Tensor:
    """Validate a [3,H,W] tensor; float images become float32. Returns the image."""
    if image.ndim != 3:
        raise ValueError(f"image tensors must be [3,H,W], got shape {tuple(image.shape)}")
    if image.shape[0] != 3:
        raise ValueError(
            f"image tensors must have 3 (RGB) channels first, got shape {tuple(image.shape)}"
        )
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"empty image: shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        return image
    if image.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"image tensors must be uint8 or float in [0,1], got dtype {image.dtype}")
    image = image.float()
    if not bool(torch.isfinite(image).all()):
        raise ValueError("image contains NaN or infinite values")
    low, high = float(image.min()), float(image.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"float images must lie in [0,1], got values in [{low:.4g}, {high:.4g}] "
            "(pass uint8 for 0..255 images)"
        )
    return image


def as_image_list(images) -> tuple:
    """(list of [3,H,W] tensors, whether the input was a batch). A [B,3,H,W] tensor or a
    list/tuple is a batch; anything else is one image."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        if images.shape[0] == 0:
            raise ValueError("empty batch: shape [0,3,H,W]")
        return [check_image_tensor(image) for image in images], True
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("empty list of images")
        return [as_image_tensor(image) for image in images], True
    return [as_image_tensor(images)], False


def make_image(seed: int, height: int, width: int) -> np.ndarray:
    """The synthetic test image of the golden data (``golden/README.md``): a bilinear colour
    gradient with 4-8 filled ellipses/rectangles and Gaussian noise.

    Returns uint8 HxWx3 in **BGR** order, as the golden ``image`` arrays (reverse the last axis
    for RGB).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    corners = rng.uniform(0, 255, size=(4, 3))
    u = (xx / (width - 1))[..., None]
    v = (yy / (height - 1))[..., None]
    img = (corners[0] * (1 - u) * (1 - v) + corners[1] * u * (1 - v)
           + corners[2] * (1 - u) * v + corners[3] * u * v)
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
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
