"""Whether a model's weights changed since an engine copied them, without reading any value.

A parameter or buffer that is replaced, moved or reallocated changes its identity or storage
address, and one changed in place (``load_state_dict``, an optimizer step, ``p.mul_(2)``)
advances its version counter. Edits that bypass the version counter (through ``p.data`` or a
numpy view of the storage), and in-place edits of inference tensors (which have no version
counter), are not seen: call :func:`yolact_fast.refresh` after them, as ``torch.compile``'s
freezing requires too.
"""

from __future__ import annotations

import itertools
import weakref

from torch import nn


class WeightsIdentity:
    """Each parameter and buffer of a model as (weak reference, storage address, version
    counter, dtype). Weak references rather than ``id``: a freed tensor's id and address can
    come back for a new one, which must not look unchanged."""

    def __init__(self, model: nn.Module):
        self.entries = tuple(_entry(t) for t in _tensors(model))

    def matches(self, model: nn.Module) -> bool:
        tensors = list(_tensors(model))
        return len(tensors) == len(self.entries) and all(
            ref() is t and (ptr, version, dtype) == _entry(t)[1:]
            for t, (ref, ptr, version, dtype) in zip(tensors, self.entries)
        )


def _tensors(model: nn.Module):
    return itertools.chain(model.parameters(), model.buffers())


def _entry(t):
    return weakref.ref(t), t.data_ptr(), None if t.is_inference() else t._version, t.dtype


def weights_identity(model: nn.Module) -> WeightsIdentity:
    """The :class:`WeightsIdentity` of ``model`` now; reads no tensor value."""
    return WeightsIdentity(model)


def check_unchanged(model: nn.Module, identity: WeightsIdentity) -> None:
    """RuntimeError if ``model``'s weights are not those of ``identity`` any more: they were
    changed while a call used a copy of them (from another thread)."""
    if not identity.matches(model):
        raise RuntimeError(
            f"the weights of the {model.config.name} model changed during the call (another thread?), "
            "so its results would not be those of either the old or the new weights alone: stop "
            "changing them during segment calls, then call again")
