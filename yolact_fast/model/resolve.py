"""Which model a call means: a :class:`Yolact`, a checkpoint path (loaded once per file
version), ``"demo"``, or None for ``$YOLACT_FAST_WEIGHTS`` if set, else the demo model."""

from __future__ import annotations

import functools
import os
from typing import Tuple

from .checkpoint import DEMO_NAME, load
from .yolact import Yolact

WEIGHTS_ENV = "YOLACT_FAST_WEIGHTS"

__all__ = ["WEIGHTS_ENV", "resolve_model", "weights_source", "clear_cache"]


def resolve_model(model) -> Yolact:
    """A Yolact from ``model`` (Yolact, checkpoint path, ``"demo"``) or from ``$YOLACT_FAST_WEIGHTS``."""
    if isinstance(model, Yolact):
        return model
    model = weights_source(model)
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a Yolact, a checkpoint path or None, got {type(model).__name__}")
    if os.fspath(model) == DEMO_NAME:
        return _load_demo()
    return _load_cached(os.path.abspath(model), *_file_stamp(model))


def weights_source(model=None):
    """What ``model`` names: itself unless None, else ``$YOLACT_FAST_WEIGHTS`` if set, else "demo"."""
    return model if model is not None else (os.environ.get(WEIGHTS_ENV) or DEMO_NAME)


def clear_cache() -> None:
    """Forget the checkpoints loaded by path (the demo model stays loaded)."""
    _load_cached.cache_clear()


def _file_stamp(path) -> Tuple[float, int]:
    try:
        stat = os.stat(path)
    except OSError:
        raise FileNotFoundError(f"checkpoint not found: {os.fspath(path)!r}") from None
    if os.path.isdir(path):
        raise IsADirectoryError(f"checkpoint {os.fspath(path)!r} is a directory, not a checkpoint file")
    return stat.st_mtime, stat.st_size


@functools.lru_cache(maxsize=1)
def _load_demo() -> Yolact:
    """The embedded demo model, loaded once."""
    return load(DEMO_NAME)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float, size: int) -> Yolact:
    """A checkpoint given by path (argument or environment), loaded once per file version."""
    return load(path)
