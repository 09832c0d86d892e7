"""The fused inference copy of each model (:func:`yolact_fast.model.fuse.inference_copy`),
built once and rebuilt whenever the model's weights change.

A change is seen through each parameter's and buffer's identity and version counter
(replacement, ``load_state_dict``, optimiser steps) and through a checksum of their values,
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
    """Per floating-point tensor, the bits of a fixed pseudo-random weighting of its values
    (float32; an edit is missed only if it moves the weighted sum by less than its rounding).
    Reads every value once: about 1% of a forward pass (see the README)."""
    sums = []
    for tensor in tensors:
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        flat = tensor.detach().reshape(-1).float()
        whole = flat.numel() // _CHECKSUM_BLOCK * _CHECKSUM_BLOCK
        weights = _checksum_weights(str(flat.device))
        total = flat[whole:].dot(weights[: flat.numel() - whole])
        if whole:
            total = total + flat[:whole].view(-1, _CHECKSUM_BLOCK).mv(weights).sum()
        sums.append(total)
    if not sums:
        return ()
    return tuple(torch.stack(sums).view(torch.int32).tolist())


@functools.lru_cache(maxsize=None)
def _checksum_weights(device: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(_CHECKSUM_BLOCK, generator=generator).add_(0.5).to(device)
