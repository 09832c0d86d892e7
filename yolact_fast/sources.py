"""What the command line reads: sources from files, folders, globs, URLs and camera indices,
and one output name per source, never shared."""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import glob
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

from .files import refuse_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".gif")
GLOB_CHARACTERS = "*?["
FILE_KINDS = ("image", "video")


@dataclasses.dataclass(frozen=True)
class Source:
    """One input: ``kind`` is "image", "video", "stream" (a URL) or "camera"; ``location`` a
    path, URL or camera index; ``name`` the output stem relative to the output folder
    ("sub/a" -> sub/a.png)."""

    kind: str
    location: Union[str, int]
    name: str


def find_sources(arguments: Sequence[str]) -> Tuple[List[Source], Dict[str, int]]:
    """Sources named by the command line (files, folders searched recursively for images, glob
    patterns, URLs, camera indices) and the count of what was skipped (files matched by a glob that
    are neither images nor videos). Each source gets a distinct output name: its path
    relative to the deepest folder common to all file sources, extension dropped.

    FileNotFoundError for a name that is none of these, ValueError for a folder without images,
    a pattern without matches, or two sources that would write the same output.
    """
    found: List[Tuple[str, Union[str, int]]] = []
    skipped: Dict[str, int] = {}
    for argument in arguments:
        if os.path.isdir(argument):
            images = _images_in(argument)
            if not images:
                raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {argument!r}")
            found += [("image", path) for path in images]
        elif os.path.isfile(argument):
            found.append((_kind_of(argument) or "image", argument))
        elif argument.isdigit():
            found.append(("camera", int(argument)))
        elif "://" in argument:
            found.append(("stream", argument))
        elif any(c in argument for c in GLOB_CHARACTERS):
            matches = sorted(p for p in _glob(argument) if os.path.isfile(p))
            if not matches:
                raise ValueError(f"no files match {argument!r}")
            for path in matches:
                kind = _kind_of(path)
                if kind is None:
                    skipped["not an image or video"] = skipped.get("not an image or video", 0) + 1
                else:
                    found.append((kind, path))
        else:
            raise FileNotFoundError(f"image file not found: {argument!r} (nor a folder, glob pattern or camera index)")
    return _named(_unique(found)), skipped


def _glob(pattern: str) -> List[str]:
    """Paths matching ``pattern``; a "**" component matches any number of folders, found by
    os.walk without following links (glob's recursion follows them: a link loop such as
    ``g/l -> .`` made it run for ever)."""
    parts = os.path.normpath(pattern).split(os.sep)
    if "**" not in parts:
        return glob.glob(pattern)
    fixed = next(i for i, part in enumerate(parts) if any(c in part for c in GLOB_CHARACTERS))
    base = os.sep.join(parts[:fixed]) or (os.sep if pattern.startswith(os.sep) else os.curdir)
    wanted = tuple(parts[fixed:])
    matches = []
    for root, dirs, files in os.walk(base):
        dirs.sort()
        relative = os.path.relpath(root, base)
        folders = () if relative == os.curdir else tuple(relative.split(os.sep))
        for name in sorted(dirs + files):
            if _components_match(wanted, folders + (name,)):
                path = os.path.join(root, name)
                matches.append(path if base != os.curdir else os.path.normpath(path))
    return matches


def _components_match(pattern: Tuple[str, ...], parts: Tuple[str, ...]) -> bool:
    """Whether path ``parts`` match ``pattern`` component by component as glob does: "**" any
    number of folders, wildcards never matching a leading dot unless the pattern has one."""

    @functools.lru_cache(maxsize=None)
    def match(p: int, q: int) -> bool:
        if p == len(pattern):
            return q == len(parts)
        if pattern[p] == "**":
            return match(p + 1, q) or (q < len(parts) and not parts[q].startswith(".") and match(p, q + 1))
        return q < len(parts) and _name_matches(parts[q], pattern[p]) and match(p + 1, q + 1)

    return match(0, 0)


def _name_matches(name: str, pattern: str) -> bool:
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def _images_in(folder: str) -> List[str]:
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        paths += [os.path.join(root, f) for f in sorted(files) if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return paths


def _kind_of(path: str) -> Optional[str]:
    extension = os.path.splitext(path)[1].lower()
    if extension in VIDEO_EXTENSIONS:
        return "video"
    return "image" if extension in IMAGE_EXTENSIONS else None


def _unique(found):
    """Drops repeats of one file (by real path) or camera, keeping the first."""
    seen, unique = set(), []
    for kind, location in found:
        key = os.path.realpath(location) if kind in FILE_KINDS else location
        if key not in seen:
            seen.add(key)
            unique.append((kind, location))
    return unique


def _named(found) -> List[Source]:
    files = [os.path.abspath(location) for kind, location in found if kind in FILE_KINDS]
    root = os.path.commonpath([os.path.dirname(path) for path in files]) if files else ""
    sources, streams = [], 0
    for kind, location in found:
        if kind == "camera":
            name = f"camera{location}"
        elif kind == "stream":
            name, streams = f"stream{streams}", streams + 1
        else:
            relative = os.path.relpath(os.path.abspath(location), root)
            name = os.path.splitext(relative)[0]
        sources.append(Source(kind, location, name))
    return sources


def output_paths(sources: Sequence[Source], out: str) -> List[Dict[str, str]]:
    """Per source the files it writes under ``out``: {"overlay": ...} for an image,
    {"video": ..., "results": ...} for a video, stream or camera. ValueError, before anything is
    written, when two sources would write one file, an output would replace an input, or
    ``out`` is an existing file."""
    refuse_file(out)
    reserved: Dict[str, str] = {}
    inputs = {os.path.realpath(s.location): s for s in sources if s.kind in FILE_KINDS}
    outputs = []
    for source in sources:
        stem = os.path.join(out, source.name)
        paths = (
            {"overlay": stem + ".png"}
            if source.kind == "image"
            else {"video": stem + ".mp4", "results": stem + ".jsonl"}
        )
        for path in paths.values():
            _refuse_linked_folders(out, path)
            key = os.path.realpath(path)
            if key in inputs:
                raise ValueError(
                    f"output {path!r} would replace the input {inputs[key].location!r}: choose another --out"
                )
            if key in reserved:
                raise ValueError(
                    f"{_describe(source)} and {reserved[key]} would both write {path!r}; "
                    "rename one of them or segment them separately"
                )
            reserved[key] = _describe(source)
        outputs.append(paths)
    return outputs


def _refuse_linked_folders(out: str, path: str) -> None:
    folder = out
    for part in os.path.relpath(os.path.dirname(path), out).split(os.sep):
        folder = os.path.join(folder, part)
        if part != os.curdir and os.path.islink(folder):
            raise ValueError(
                f"output {path!r} would be written through the symbolic link {folder!r} below "
                f"--out {out!r}; links below --out are never followed: remove it or choose another --out"
            )


def _describe(source: Source) -> str:
    return f"camera {source.location}" if source.kind == "camera" else repr(source.location)
