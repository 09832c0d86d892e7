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


_CHUNK_ELEMENTS = 1 << 22  # a GPU checksum concatenates tensors up to this many elements
# (the peak is a few times this in bytes: the concatenation, its weighted product and the
# int64 copy that the row sums cast it to)


@torch.no_grad()
def weights_checksum(tensors) -> tuple:
    """Position-weighted sums of the tensors' raw bits (each element read as an integer of
    its width, times a fixed pseudo-random odd weight; the sums wrap modulo 2**64). Any change
    of one element's bits is seen, NaN and infinity included; several changes are missed only
    if they cancel modulo 2**32 or 2**64 by chance. Reads every value once (see the README).

    On the CPU each tensor is summed alone; on a GPU the tensors are concatenated in chunks
    of up to 2**22 elements, so that yolact_base's 660 tensors cost a few launches, not
    thousands, and each device is read back once (one synchronization, not one per tensor).
    """
    sums: dict = {}
    for chunk in _chunks(t for t in tensors if t.numel()):
        flat = chunk[0] if len(chunk) == 1 else torch.cat(chunk)
        sums.setdefault(flat.device, []).append(_bits_checksum(flat))
        del flat, chunk  # free this chunk's concatenation before the next one is made
    return tuple(value for device_sums in sums.values() for value in torch.stack(device_sums).tolist())


_INTEGER_OF_WIDTH = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _integer_view(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's bits as a flat tensor of integers of its element width."""
    flat = tensor.detach()
    if flat.is_complex():
        flat = torch.view_as_real(flat)
    return flat.reshape(-1).view(_INTEGER_OF_WIDTH[flat.element_size()])


def _chunks(tensors):
    """Lists of flat integer views to checksum together: one tensor each on the CPU (where a
    concatenation costs more than the calls it saves); else the tensors of each device and
    width, in order, in runs of up to _CHUNK_ELEMENTS elements (a larger tensor alone), each
    yielded as soon as it is full, so that only one run per device and width is held.
    yolact_base interleaves int64 BatchNorm counters with its float weights, so runs of
    neighbours alone would make 211 chunks; grouping by width makes 15."""
    open_runs: dict = {}  # (device, dtype) -> (views, elements)
    for tensor in tensors:
        flat = _integer_view(tensor)
        if flat.device.type == "cpu":
            yield [flat]
            continue
        key = (flat.device, flat.dtype)
        views, elements = open_runs.get(key, ([], 0))
        if views and elements + flat.numel() > _CHUNK_ELEMENTS:
            yield views
            views, elements = [], 0
        open_runs[key] = (views + [flat], elements + flat.numel())
    for views, _ in open_runs.values():
        yield views


def _bits_checksum(flat: torch.Tensor) -> torch.Tensor:
    """The weighted sum of flat integers ``flat``, as a 0-d int64 tensor on their device."""
    # 4-byte products wrap modulo 2**32 (an odd weight keeps every single-element change),
    # 8-byte ones modulo 2**64; row sums and the row-weighted total are int64
    compute = torch.int64 if flat.element_size() == 8 else torch.int32
    flat = flat.to(compute)
    weights = _checksum_weights(str(flat.device), compute)
    rows, tail = divmod(flat.numel(), _CHECKSUM_BLOCK)
    row_sums = (flat[: rows * _CHECKSUM_BLOCK].view(rows, _CHECKSUM_BLOCK) * weights).sum(1, dtype=torch.int64)
    tail_sum = (flat[rows * _CHECKSUM_BLOCK:] * weights[:tail]).sum(dtype=torch.int64)
    row_weights = _row_weights(str(flat.device), rows + 1)
    return (row_sums * row_weights[:rows]).sum() + tail_sum * row_weights[rows]


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
