"""The CUDA implementations of :mod:`yolact_fast.ops`, run on CPU tensors under a host
emulation of CUDA blocks, so that their launch logic and kernels can be tested without a GPU.

The functions take the arguments of their :mod:`yolact_fast.ops` namesakes (checked by the
same code) and return what those return, computed by the CUDA launchers and kernels
(csrc/cuda/) compiled for the host. Each block's threads run as fibers with ``__shared__``
memory, ``__syncthreads()`` and warp collectives; shared-memory races, out-of-bounds
shared accesses, reads of unwritten shared memory, deadlocks and launches past the CUDA
limits raise RuntimeError (ValueError for launch configurations) naming the kernel, the
block and the threads.

    from yolact_fast.testing import emulated_cuda as ecuda
    with ecuda.launches() as log, ecuda.schedule(seed=3):
        masks = ecuda.paste_masks(proto, coeffs, boxes, (480, 640))
    print([(l.kernel, l.grid, l.block, l.shared_bytes) for l in log])

Slow (every thread is a fiber): for tests, not for inference.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch

from .. import _emulation
from ..ops import _args
from ..configs import YolactConfig

__all__ = [
    "make_priors",
    "decode_boxes",
    "fast_nms",
    "cluster_nms",
    "detect",
    "assemble_masks",
    "paste_masks",
    "bits_checksum",
    "launches",
    "schedule",
    "Launch",
]

_kernels = _emulation.emulated_cuda


class Launch(NamedTuple):
    """One kernel launch: name, grid and block (x, y, z), dynamic shared memory bytes, and
    the paths some thread took: global-memory access paths ("vector_loads",
    "element_loads", "quad_stores", "byte_stores", "wide_stores") and where the NMS kernels
    keep their data ("packed_keys": class_nms's radix select keys in shared memory;
    "staged_boxes": its ranked boxes in shared memory; "merge_packed_keys": the keys of the
    merge its last block runs in shared memory)."""

    kernel: str
    grid: Tuple[int, int, int]
    block: Tuple[int, int, int]
    shared_bytes: int
    paths: Tuple[str, ...] = ()


@contextlib.contextmanager
def launches() -> Iterator[List[Launch]]:
    """Records every custom-kernel launch made by this thread inside the ``with`` block
    into the list it yields (filled when the block exits)."""
    records: List[Launch] = []
    start = _emulation.begin_recording()
    try:
        yield records
    finally:
        records.extend(Launch(*r) for r in _emulation.end_recording(start))


@contextlib.contextmanager
def schedule(seed: int = 0, check_races: bool = True, opt_in_shared_bytes: Optional[int] = None) -> Iterator[None]:
    """Emulation settings for this thread inside the ``with`` block: ``seed`` draws the
    order in which a block's threads run between barriers; ``check_races`` turns the
    shared-memory race and uninitialised-read checks on or off (bounds checks stay on);
    ``opt_in_shared_bytes`` is the emulated device's shared memory per block with the
    opt-in, which the launchers size their buffers by: from 64 KiB (compute capability 7.5,
    the least of the supported GPUs) to 227 KiB (9.0, the default); None keeps the
    enclosing block's device."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
    if opt_in_shared_bytes is not None and (
        isinstance(opt_in_shared_bytes, bool)
        or not isinstance(opt_in_shared_bytes, int)
        or not 64 * 1024 <= opt_in_shared_bytes <= 227 * 1024
    ):
        raise ValueError(f"opt_in_shared_bytes must be an int in [65536, 232448], got {opt_in_shared_bytes!r}")
    previous = _emulation.options()
    device = previous[2] if opt_in_shared_bytes is None else opt_in_shared_bytes
    _emulation.set_options(seed, bool(check_races), device)
    try:
        yield
    finally:
        _emulation.set_options(*previous)


def make_priors(
    config: YolactConfig,
    image_size: Tuple[int, int],
    device: Optional[torch.device] = None,
    *,
    cached: bool = True,
) -> torch.Tensor:
    """:func:`yolact_fast.ops.make_priors` (never cached here, so every call launches:
    ``cached`` is accepted for the same signature)."""
    size, device = _args.priors_args(config, image_size, device)
    return _kernels.make_priors(*_args.priors_inputs(config, size, device))


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = (0.1, 0.2)) -> torch.Tensor:
    """:func:`yolact_fast.ops.decode_boxes`."""
    return _kernels.decode_boxes(*_args.decode_args(loc, priors, variances))


def fast_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    coeffs: torch.Tensor,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    score_threshold: float = 0.05,
    max_detections: int = 100,
    method: str = "fast",
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`yolact_fast.ops.fast_nms`."""
    return _args.trim_detections(
        _kernels.fast_nms(
            *_args.nms_args(boxes, scores, coeffs, iou_threshold, top_k, score_threshold, max_detections, method)
        )
    )


def cluster_nms(boxes, scores, coeffs, iou_threshold=0.5, top_k=200, score_threshold=0.05, max_detections=100):
    """:func:`yolact_fast.ops.cluster_nms`."""
    return fast_nms(boxes, scores, coeffs, iou_threshold, top_k, score_threshold, max_detections, method="cluster")


def detect(
    loc: torch.Tensor,
    conf_logits: torch.Tensor,
    coeffs: torch.Tensor,
    priors: torch.Tensor,
    variances: Sequence[float] = (0.1, 0.2),
    iou_threshold: float = 0.5,
    top_k: int = 200,
    score_threshold: float = 0.05,
    max_detections: int = 100,
    method: str = "fast",
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`yolact_fast.ops.detect`."""
    return _args.trim_detections(
        _kernels.detect(
            *_args.detect_args(
                loc,
                conf_logits,
                coeffs,
                priors,
                variances,
                iou_threshold,
                top_k,
                score_threshold,
                max_detections,
                method,
            )
        )
    )


def assemble_masks(
    proto: torch.Tensor, coeffs: torch.Tensor, boxes: torch.Tensor, crop_padding: float = 1
) -> torch.Tensor:
    """:func:`yolact_fast.ops.assemble_masks`."""
    return _kernels.assemble_masks(*_args.mask_args(proto, coeffs, boxes, crop_padding))


def paste_masks(
    proto: torch.Tensor,
    coeffs: torch.Tensor,
    boxes: torch.Tensor,
    size: Tuple[int, int],
    threshold: float = 0.5,
    crop_padding: float = 1,
) -> torch.Tensor:
    """:func:`yolact_fast.ops.paste_masks`."""
    return _kernels.paste_masks(*_args.paste_args(proto, coeffs, boxes, size, threshold, crop_padding))


def bits_checksum(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """:func:`yolact_fast.ops.bits_checksum`."""
    return _kernels.bits_checksum(_args.checksum_args(tensors))
