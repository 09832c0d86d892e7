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

import threading
import weakref
from typing import Optional, Tuple

import torch
from torch import nn

from .. import ops
from .fuse import inference_copy
from .yolact import Yolact

__all__ = ["inference_network", "refresh", "weights_key"]


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
    """:func:`yolact_fast.ops.bits_checksum` of the tensors, grouped by device: one kernel
    launch and one read-back (one synchronization) per device, whatever the number of
    tensors (yolact_base has 660). Any change of one element's bits is seen (complex128:
    of one half), NaN and infinity included; several changes are missed only if they
    cancel modulo 2**64 by chance. Reads every value once (see the README)."""
    by_device: dict = {}
    for tensor in tensors:
        by_device.setdefault(tensor.device, []).append(tensor)
    return tuple(value for group in by_device.values() for value in ops.bits_checksum(group).tolist())
