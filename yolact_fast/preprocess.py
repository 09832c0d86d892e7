"""Images -> network input, as the official FastBaseTransform; used by inference and training.

Images over 256 MB as float32 (about 22 megapixels) are resized in bands of rows, so that no
float copy of the whole image is made (a 20000x20000 image would need 4.8 GB): resize along
rows band by band, then along columns. That equals resizing the whole image at once up to
float rounding (at most an ulp or two of 0..255, and bit-identical for most sizes): PyTorch's
kernel interpolates rows first too, but rounds differently for some output widths. Smaller
images take the whole-image path, bit-identical to the official transform.
"""

from __future__ import annotations

import functools
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

from .configs import IMAGENET_MEAN_BGR, IMAGENET_STD_BGR, YolactConfig

__all__ = ["preprocess", "resize"]

WHOLE_IMAGE_BYTES = 256 << 20  # float32 bytes above which an image is resized in bands
BAND_BYTES = 32 << 20  # float32 bytes of one band


def preprocess(images: Sequence[torch.Tensor], config: YolactConfig, device) -> torch.Tensor:
    """[3,H,W] images (uint8 RGB or float in [0,1]) -> network input [B,3,S,S] float32.

    Equals the official FastBaseTransform (which takes BGR 0..255): bilinear resize to SxS
    (align_corners=False, no antialias), then (x - mean) / std per channel (or x / 255).
    Resizing and normalizing act per channel, so doing them in RGB order with the constants
    reordered gives the same bits as the official BGR path followed by its channel flip.
    """
    size = (config.max_size, config.max_size)
    batch = torch.cat([resize(image.to(device), size) for image in images])
    if config.normalize == "unit":
        return batch / 255
    mean, std = _normalization(batch.device)
    return (batch - mean) / std


@functools.lru_cache(maxsize=16)
def _normalization(device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std in RGB order as float32 [1,3,1,1] on ``device``, made once per
    device: on a GPU each ``torch.tensor(..., device=...)`` is a blocking host-to-device copy."""
    with torch.inference_mode(False):  # usable outside inference mode too (training)
        mean = torch.tensor(IMAGENET_MEAN_BGR[::-1], dtype=torch.float32, device=device)
        std = torch.tensor(IMAGENET_STD_BGR[::-1], dtype=torch.float32, device=device)
    return mean[None, :, None, None], std[None, :, None, None]


def resize(
    image: torch.Tensor, size: Tuple[int, int], whole_image_bytes: int = WHOLE_IMAGE_BYTES, band_bytes: int = BAND_BYTES
) -> torch.Tensor:
    """[3,H,W] uint8 (0..255) or float in [0,1] -> float32 [1,3,h,w] in 0..255, bilinear
    (align_corners=False, no antialias) as ``F.interpolate`` on the image converted to float.

    Images over ``whole_image_bytes`` as float32 are resized along rows in bands of
    ``band_bytes`` (each converted on its own), then along columns (see the module docstring):
    peak memory is the image plus ``band_bytes`` plus a float32 [3,H,w] intermediate.
    """
    height, width = image.shape[-2:]
    row_bytes = 3 * width * 4
    if height * row_bytes <= whole_image_bytes:
        return _interpolate(_to_255(image), size)
    rows = max(1, band_bytes // row_bytes)
    resized_rows = torch.empty((1, 3, height, size[1]), dtype=torch.float32, device=image.device)
    for top in range(0, height, rows):
        band = image[:, top : top + rows]
        resized_rows[:, :, top : top + rows] = _interpolate(_to_255(band), (band.shape[1], size[1]))
    return _interpolate(resized_rows, size)


def _interpolate(image: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """float32 [3,H,W] or [1,3,H,W] -> [1,3,h,w], bilinear, align_corners=False."""
    batch = image if image.ndim == 4 else image[None]
    return F.interpolate(batch, tuple(size), mode="bilinear", align_corners=False)


def _to_255(image: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 0..255; float in [0,1] -> times 255."""
    return image.float() if image.dtype == torch.uint8 else image.float() * 255
