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

from torch import nn


def weights_identity(model: nn.Module) -> tuple:
    """Identity, storage address and version counter of every parameter and buffer (see the
    module docstring); reads no tensor value."""
    return tuple(
        (id(t), t.data_ptr(), None if t.is_inference() else t._version, t.dtype)
        for t in itertools.chain(model.parameters(), model.buffers())
    )


def check_unchanged(model: nn.Module, identity: tuple) -> None:
    """RuntimeError if ``model``'s weights are not those of ``identity`` any more: they were
    changed while a call used a copy of them (from another thread)."""
    if weights_identity(model) != identity:
        raise RuntimeError(
            f"the weights of the {model.config.name} model changed during the call (another thread?), "
            "so its results would not be those of either the old or the new weights alone: stop "
            "changing them during segment calls, then call again")
