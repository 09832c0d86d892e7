"""Writes that never leave a partial file or follow a planted link: atomic replacement,
appending, output folders."""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import Iterator


def output_folder(path: str, option: str = "--out") -> str:
    """Creates folder ``path`` (with its parents) and returns it; ValueError naming ``option``
    if ``path`` is an existing file."""
    refuse_file(path, option)
    os.makedirs(path, exist_ok=True)
    return path


def refuse_file(path: str, option: str = "--out") -> None:
    """ValueError naming ``option`` if ``path`` is an existing file (not a folder)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{option} must be a folder, but {path!r} is an existing file")


@contextlib.contextmanager
def atomic_output(path: str, mode: str = "wb") -> Iterator:
    """A file object whose content replaces ``path`` only when the block ends without an
    exception: it is written to a new temporary file in the same folder, then renamed over
    ``path``. The temporary file is created exclusively (a link planted at its name makes
    the open fail) and the rename replaces a link at ``path`` instead of following it. A
    failed write (disk full, size limit) raises OSError naming ``path``; the previous file,
    if any, is unchanged."""
    folder, base = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp")
    try:
        os.makedirs(folder, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        descriptor = os.open(temporary, flags, 0o666)
    except OSError as error:
        raise _naming(error, path) from error
    try:
        with os.fdopen(descriptor, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError) and error.filename is None:  # a write's error names no file
            raise _naming(error, path) from error
        raise


def _naming(error: OSError, path: str) -> OSError:
    message = f"cannot write {path!r} (the previous file, if any, is unchanged): {error.strerror or error}"
    return OSError(error.errno, message) if error.errno is not None else OSError(message)


def append_output(path: str):
    """A text file object appending to ``path`` (created if missing); a link planted at ``path``
    is not followed: OSError naming it instead."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(path, flags, 0o666)
    except OSError as error:
        link = " (it is a symbolic link, which is never followed)" if os.path.islink(path) else ""
        raise OSError(error.errno, f"cannot append to {path!r}{link}: {error.strerror}") from error
    return os.fdopen(descriptor, "a")
