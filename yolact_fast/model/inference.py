"""The fused inference copy of each model (:func:`yolact_fast.model.fuse.inference_copy`),
built once and rebuilt whenever the model's weights change.

A change is seen through each parameter's and buffer's identity and version counter
(replacement, ``load_state_dict``, optimiser steps) and through a checksum of their bits,
which also sees edits that bypass the version counter (``p.data``, numpy views of the
storage). :func:`refresh` drops a model's copy explicitly.

The copies are kept outside the models, so a model stays copyable and picklable (the fused
copy holds oneDNN-packed weights, which are neither).
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import Optional, Tuple

import torch
from torch import nn

from .fuse import inference_copy
from .yolact import Yolact

__all__ = ["inference_network", "refresh", "weights_key"]

_CHECKSUM_BLOCK = 4096


class _FusedCopy:
    """One model's fused copy and the :func:`weights_key` it was built from."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entry: Optional[Tuple[tuple, nn.Module]] = None


_COPIES: "weakref.WeakKeyDictionary[nn.Module, _FusedCopy]" = weakref.WeakKeyDictionary()
_COPIES_LOCK = threading.Lock()


def inference_network(model: Yolact) -> nn.Module:
    """The fused inference copy of ``model``, rebuilt whenever its weights changed."""
    with _COPIES_LOCK:
        copy = _COPIES.setdefault(model, _FusedCopy())
    key = weights_key(model)
    with copy.lock:
        if copy.entry is None or copy.entry[0] != key:
            copy.entry = None  # release the old copy before building the new one
            copy.entry = (key, inference_copy(model))
        return copy.entry[1]


def refresh(model: Yolact) -> None:
    """Drop the fused copy of ``model``: the next :func:`yolact_fast.segment` rebuilds it
    from the current weights."""
    with _COPIES_LOCK:
        _COPIES.pop(model, None)


def weights_key(model: nn.Module) -> tuple:
    """Changes when a parameter or buffer is replaced, moved, modified in place (version
    counter) or has its values edited any other way (checksum, :func:`weights_checksum`)."""
    tensors = list(model.parameters()) + list(model.buffers())
    identity = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
    return identity + weights_checksum(tensors)


@torch.no_grad()
def weights_checksum(tensors) -> tuple:
    """Per tensor, a position-weighted sum of its raw bits (each element read as an integer of
    its width, times a fixed pseudo-random odd weight; the sum wraps modulo 2**64). Any change
    of one element's bits is seen, NaN and infinity included; several changes are missed only
    if they cancel modulo 2**32 or 2**64 by chance. Reads every value once (see the README)."""
    return tuple(_bits_checksum(tensor) for tensor in tensors if tensor.numel())


_INTEGER_OF_WIDTH = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits_checksum(tensor: torch.Tensor) -> int:
    flat = tensor.detach()
    if flat.is_complex():
        flat = torch.view_as_real(flat)
    flat = flat.reshape(-1).view(_INTEGER_OF_WIDTH[flat.element_size()])
    # 4-byte products wrap modulo 2**32 (an odd weight keeps every single-element change),
    # 8-byte ones modulo 2**64; row sums and the row-weighted total are int64
    compute = torch.int64 if flat.element_size() == 8 else torch.int32
    flat = flat.to(compute)
    weights = _checksum_weights(str(flat.device), compute)
    rows, tail = divmod(flat.numel(), _CHECKSUM_BLOCK)
    row_sums = (flat[: rows * _CHECKSUM_BLOCK].view(rows, _CHECKSUM_BLOCK) * weights).sum(1, dtype=torch.int64)
    tail_sum = (flat[rows * _CHECKSUM_BLOCK:] * weights[:tail]).sum(dtype=torch.int64)
    row_weights = _row_weights(str(flat.device), rows + 1)
    return int((row_sums * row_weights[:rows]).sum() + tail_sum * row_weights[rows])


@functools.lru_cache(maxsize=None)
def _checksum_weights(device: str, dtype: torch.dtype) -> torch.Tensor:
    """Odd pseudo-random weights of the positions within a block."""
    info = torch.iinfo(dtype)
    generator = torch.Generator().manual_seed(0)
    weights = torch.randint(info.min, info.max, (_CHECKSUM_BLOCK,), dtype=dtype, generator=generator)
    return weights.bitwise_or_(1).to(device)


def _row_weights(device: str, count: int) -> torch.Tensor:
    """Odd pseudo-random int64 weights of the blocks: at least ``count`` of them."""
    return _row_weights_cached(device, 1 << max(count - 1, 0).bit_length())


@functools.lru_cache(maxsize=None)
def _row_weights_cached(device: str, count: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    weights = torch.randint(-(1 << 63), (1 << 63) - 1, (count,), dtype=torch.int64, generator=generator)
    return weights.bitwise_or_(1).to(device)
