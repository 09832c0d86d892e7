"""Engines built once per (model, device, precision, runtime), kept in a bounded LRU cache
and rebuilt when :func:`~yolact_fast.engine.identity.weights_identity` says the model's weights
changed."""

from __future__ import annotations

import collections
import threading
import weakref
from typing import Dict, Hashable, Optional, Tuple

from torch import nn

from .build import Engine, build_engine
from .identity import check_unchanged, weights_identity

#: Engines kept at most, over all models; the least recently used is dropped first.
MAX_ENGINES = 8

_lock = threading.Lock()
_slots: "weakref.WeakKeyDictionary[nn.Module, Dict[Hashable, _Slot]]" = weakref.WeakKeyDictionary()
_recent: "collections.OrderedDict[Tuple[int, Hashable], Tuple[weakref.ref, Hashable]]" = collections.OrderedDict()


class _Slot:
    """One cached engine and the lock that serializes its (re)building."""

    def __init__(self):
        self.lock = threading.Lock()
        self.engine: Optional[Engine] = None


def get_engine(model: nn.Module, precision: str = "fp32", runtime: str = "torch") -> Engine:
    """The engine of ``model`` for these options: the cached one while the model's weights are
    unchanged, else a new one (the old one is dropped first, to free its memory)."""
    key = (str(model.device), precision, runtime)
    with _lock:
        slot = _slots.setdefault(model, {}).setdefault(key, _Slot())
    identity = weights_identity(model)
    with slot.lock:
        if slot.engine is None or slot.engine.identity != identity:
            slot.engine = None
            engine = build_engine(model, precision, runtime, identity)
            check_unchanged(model, identity)  # a copy made while they changed is torn
            slot.engine = engine
        engine = slot.engine
    _mark_used(model, key)
    return engine


def _mark_used(model: nn.Module, key: Hashable) -> None:
    """Move (model, key) to the recent end; drop the least recently used beyond MAX_ENGINES."""
    with _lock:
        entry = (id(model), key)
        _recent.pop(entry, None)
        _recent[entry] = (weakref.ref(model), key)
        while len(_recent) > MAX_ENGINES:
            _, (model_ref, old_key) = _recent.popitem(last=False)
            owner = model_ref()
            if owner is not None:
                _slots.get(owner, {}).pop(old_key, None)


def refresh(model: nn.Module) -> None:
    """Drop every engine of ``model``: the next call builds them again from its current
    weights. Needed only after edits the cache cannot see (see :mod:`yolact_fast.engine`)."""
    with _lock:
        _slots.pop(model, None)
        for entry in [entry for entry in _recent if entry[0] == id(model)]:
            del _recent[entry]


def cached_engines() -> int:
    """How many engines the cache holds."""
    with _lock:
        return sum(len(slots) for slots in _slots.values())
