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
from .options import check_runtime, resolve_precision

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
    runtime = check_runtime(runtime)
    key = (str(model.device), resolve_precision(precision, model.device, runtime), runtime)
    with _lock:
        slot = _slots.setdefault(model, {}).setdefault(key, _Slot())
    with slot.lock:
        if slot.engine is None or not slot.engine.identity.matches(model):
            slot.engine = None
            identity = weights_identity(model)
            try:
                engine = build_engine(model, key[1], runtime, identity)
                check_unchanged(model, identity)  # a copy made while they changed is torn
            except BaseException:
                with _lock:
                    _slots.get(model, {}).pop(key, None)
                raise
            slot.engine = engine
        engine = slot.engine
    _mark_used(model, key)
    return engine


def _mark_used(model: nn.Module, key: Hashable) -> None:
    """Move (model, key) to the recent end; drop the least recently used beyond MAX_ENGINES
    (and the entries of models that no longer exist)."""
    with _lock:
        for entry in [entry for entry, (ref, _) in _recent.items() if ref() is None]:
            del _recent[entry]
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
