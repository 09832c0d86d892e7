"""Image inputs: validation and conversion to CHW tensors."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Union

import numpy as np
import torch

if TYPE_CHECKING:
    import PIL.Image

ImageLike = Union[torch.Tensor, np.ndarray, "PIL.Image.Image", str, os.PathLike]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


MAX_IMAGE_PIXELS = 8192 * 8192
"""Image files and PIL images above this many pixels are refused from their header, before they
are decoded (3 bytes a pixel once decoded: 201 MB at the cap). PIL's own limit
(``PIL.Image.MAX_IMAGE_PIXELS``, 89.5 MP: a warning, an error at twice that) is not changed."""

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_image(path: Union[str, os.PathLike]) -> torch.Tensor:
    """A file -> uint8 [3,H,W] RGB. FileNotFoundError if missing; ValueError if unreadable, empty
    or larger than :data:`MAX_IMAGE_PIXELS` (checked on the header, before decoding)."""
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path!r}")
    what = f"image {path!r}"
    try:
        image = Image.open(path)  # reads the header only
    except Image.DecompressionBombError as error:
        raise ValueError(f"{what} is too large: {error}") from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as error:
        raise ValueError(f"cannot read {what}: {error}") from error
    with image:
        _check_size(image.height, image.width, what)
        try:
            image.load()
        except (OSError, ValueError, SyntaxError, EOFError) as error:  # what PIL's decoders raise
            raise ValueError(f"cannot read {what}: {error}") from error
        return pil_to_tensor(image, what)


def pil_to_tensor(image, what: str = "PIL image") -> torch.Tensor:
    """PIL image -> uint8 [3,H,W] RGB. 16-bit modes ("I;16", and "I" holding 0..65535, as
    PIL opens 16-bit PNGs) are scaled to 8 bits, "F" images must hold values in [0,1] and
    are scaled by 255, every other mode is converted to RGB. ValueError for an empty image,
    one above :data:`MAX_IMAGE_PIXELS` (before decoding) or values out of range."""
    width, height = image.size
    _check_size(height, width, what)
    if image.mode in _SIXTEEN_BIT_MODES:
        array = np.asarray(image).astype(np.int64)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError(
                f"{what}: mode {image.mode!r} values must lie in 0..65535 (16-bit), got {array.min()}..{array.max()}"
            )
        return _gray_to_rgb(scale_16_to_8_bits(array))
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float32)
        if not (np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0):
            raise ValueError(
                f"{what}: mode 'F' images must hold finite values in [0,1] (scaled by 255), "
                f"got values in [{np.nanmin(array):.4g}, {np.nanmax(array):.4g}]"
            )
        return _gray_to_rgb(np.rint(array * 255.0).astype(np.uint8))
    try:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except ValueError as error:  # a mode PIL cannot convert, e.g. "La"
        raise ValueError(f"{what}: cannot convert PIL mode {image.mode!r} to RGB: {error}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _check_size(height: int, width: int, what: str) -> None:
    if height < 1 or width < 1:
        raise ValueError(f"{what} is empty: {width}x{height} pixels (width x height)")
    if height * width > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"{what} is too large: {width}x{height} = {height * width} pixels, more than "
            f"yolact_fast.io.MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS} (a decompression bomb?)"
        )


def scale_16_to_8_bits(array: np.ndarray) -> np.ndarray:
    """Integers in 0..65535 -> uint8, rounded to nearest (65535 -> 255, 257 -> 1)."""
    return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(gray)).expand(3, *gray.shape).contiguous()


def as_image_tensor(image: ImageLike) -> torch.Tensor:
    """Any supported image -> validated [3,H,W] tensor: uint8 RGB, or float32 RGB in [0,1].

    Supported: uint8 or float [3,H,W] torch tensors, numpy HxWx3 RGB arrays (uint8, uint16
    scaled to 8 bits, float in [0,1]), PIL images and paths (see :func:`pil_to_tensor`).
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
    if array.dtype not in (np.uint8, np.uint16) and array.dtype.kind != "f":
        raise TypeError(f"numpy images must be uint8, uint16 or float (in [0,1]) HxWx3 RGB, got dtype {array.dtype}")
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"numpy images must be HxWx3 (RGB), got shape {tuple(array.shape)}")
    if array.dtype == np.uint16:
        array = scale_16_to_8_bits(array)
    return check_image_tensor(torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1))


def check_dense(images: torch.Tensor) -> None:
    """Refuse tensors without values to read: sparse (any layout), nested and meta tensors."""
    expected = "images must be dense (strided) tensors on the CPU or a CUDA device"
    if images.is_nested:
        raise ValueError(f"{expected}, got a nested tensor: pass a list of [3,H,W] tensors")
    if images.layout != torch.strided:
        raise ValueError(f"{expected}, got layout {images.layout} (call .to_dense())")
    if images.is_meta:
        raise ValueError(f"{expected}, got a tensor on the meta device (it holds no values)")


def check_image_tensor(image: torch.Tensor) -> torch.Tensor:
    """Validate a [3,H,W] tensor; float images become float32. Returns the image."""
    check_dense(image)
    if image.ndim != 3:
        raise ValueError(f"image tensors must be [3,H,W], got shape {tuple(image.shape)}")
    if image.shape[0] != 3:
        raise ValueError(f"image tensors must have 3 (RGB) channels first, got shape {tuple(image.shape)}")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"empty image: shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        return image
    if image.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"image tensors must be uint8 or float in [0,1], got dtype {image.dtype}")
    image = image.float()
    # one reduction and one read-back (on a GPU, one synchronization): NaN propagates to
    # both bounds, an infinity to one
    low, high = torch.stack(torch.aminmax(image)).tolist()
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("image contains NaN or infinite values")
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"float images must lie in [0,1], got values in [{low:.4g}, {high:.4g}] (pass uint8 for 0..255 images)"
        )
    return image


def as_image_list(images) -> tuple:
    """(list of [3,H,W] tensors, whether the input was a batch). A [B,3,H,W] tensor or a
    list/tuple is a batch; anything else is one image."""
    if isinstance(images, torch.Tensor):
        check_dense(images)
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        if images.shape[0] == 0:
            raise ValueError("empty batch: shape [0,3,H,W]")
        return [check_image_tensor(image) for image in images], True
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("empty list of images")
        return [as_image_tensor(image) for image in images], True
    return [as_image_tensor(images)], False
