"""Turn command-line arguments (files, folders, globs, lists of files) into image paths.

Problems found while listing (an unreadable folder, a symlink loop, a glob that matches
nothing) never stop the listing: they are collected as ``(path, reason)`` and reported as
error rows beside the results of the other files.
"""
from __future__ import annotations

import functools
import glob
import importlib.util
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import MusiqError
from ..decoding.video import VIDEO_SUFFIXES

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp",
                  ".gif"}
#: Why a folder scan leaves out files of these suffixes (others: "not an image suffix").
SKIP_REASONS = {
    **dict.fromkeys((".heic", ".heif", ".avif", ".jxl", ".jp2", ".svg", ".psd", ".pdf",
                     ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".raf", ".rw2"),
                    "unsupported format"),
    **dict.fromkeys((".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".3gp"), "video"),
}
URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@dataclass
class Expansion:
    """What the arguments name: ``files`` to score (each once, in order), ``problems``
    (``(path, reason)`` for arguments or folders that cannot be listed) and ``hints`` (text
    for the user, e.g. a folder whose images are all in subfolders)."""

    files: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    #: Files a folder scan left out, by suffix (``""``: none); hidden files are not counted.
    skipped: Counter = field(default_factory=Counter)

    def skipped_summary(self) -> str | None:
        """``skipped 3 files: 2 .heic (unsupported format), 1 .txt (not an image suffix)``
        (most frequent first), or None when nothing was left out."""
        if not self.skipped:
            return None
        parts = [f"{n} {suffix or '(no suffix)'} "
                 f"({_skip_reason(suffix)})"
                 for suffix, n in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0]))]
        total = sum(self.skipped.values())
        return f"skipped {total} file{'s' if total != 1 else ''} in folders: {', '.join(parts)}"


@functools.cache
def video_scoring() -> bool:
    """Can videos be scored here (PyAV, the ``video`` extra, installed)?"""
    return importlib.util.find_spec("av") is not None


def _is_image_name(name: str) -> bool:
    """Scanned by suffix: images, and videos (``musiq.decoding.video.VIDEO_SUFFIXES``) where they can
    be scored (:func:`video_scoring`)."""
    suffix = Path(name).suffix.lower()
    return suffix in IMAGE_SUFFIXES or (suffix in VIDEO_SUFFIXES and video_scoring())


def _skip_reason(suffix: str) -> str:
    if suffix in VIDEO_SUFFIXES and not video_scoring():
        return "video; needs the 'video' extra"
    return SKIP_REASONS.get(suffix, "not an image suffix")


def _reason(e: OSError) -> str:
    return f"cannot list folder ({e.strerror or e})"


def _count_skipped(names: Iterable[str], skipped: Counter | None) -> None:
    if skipped is not None:
        skipped.update(Path(n).suffix.lower() for n in names
                       if not n.startswith(".") and not _is_image_name(n))


def folder_images(folder: str, recursive: bool = False,
                  problems: list[tuple[str, str]] | None = None,
                  skipped: Counter | None = None) -> list[str]:
    """Image files (by suffix, any case) in a folder, sorted; with ``recursive`` in its
    subfolders too (sorted by path, hidden folders skipped). Folders that cannot be read are
    added to ``problems`` (raised as :class:`OSError` when it is None); the other files'
    suffixes are counted in ``skipped``."""
    if not recursive:
        try:
            with os.scandir(folder) as entries:
                names = [e.name for e in entries if not _is_dir(e)]
            _count_skipped(names, skipped)
            return sorted(os.path.join(folder, n) for n in names if _is_image_name(n))
        except OSError as e:
            if problems is None:
                raise
            problems.append((folder, _reason(e)))
            return []

    def onerror(e: OSError) -> None:
        if problems is None:
            raise e
        problems.append((e.filename or folder, _reason(e)))

    out: list[str] = []
    for root, dirs, files in os.walk(folder, onerror=onerror):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        _count_skipped(files, skipped)
        out += [os.path.join(root, f) for f in files if _is_image_name(f)]
    return sorted(out)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _nested_images(folder: str) -> int:
    """Images in the subfolders of a folder (0 when they cannot be listed)."""
    return sum(1 for _ in folder_images(folder, True, problems=[]))


def _case_insensitive(pattern: str) -> str:
    """The pattern with every letter of its last component matching either case (folder
    scans select suffixes case-insensitively: ``*.jpg`` finds ``X.JPG`` as they do)."""
    head, tail = os.path.split(pattern)
    out, in_class = [], False
    for ch in tail:
        if ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        elif ch.isalpha() and not in_class and ch.lower() != ch.upper():
            out.append(f"[{ch.lower()}{ch.upper()}]")
            continue
        out.append(ch)
    return os.path.join(head, "".join(out))


def collect(paths: Iterable[str], *, recursive: bool = False, uris: bool = False) -> Expansion:
    """Files as given (even without an image suffix: the content decides); folders become
    their image files; an argument that is not an existing path but holds ``*``, ``?`` or
    ``[`` is a glob (``**`` matches subfolders; the file name part matches either case).
    Each file is listed once (the first time), compared by resolved path. Anything else is
    kept as a file, to fail with the reason the decoder gives. ``-`` and URLs (unless
    ``uris``: the Ray engine reads filesystem URIs) are problems saying what to do instead."""
    result = Expansion()
    seen: set[str] = set()

    def add(path: str) -> None:
        key = resolved(path)
        if key not in seen:
            seen.add(key)
            result.files.append(path)

    for p in paths:
        if p == "-" and not os.path.lexists(p):
            result.problems.append((p, "standard input is not read as an image; to read a "
                                       "list of paths from it, use --files-from -"))
        elif URL.match(p) and not uris and not os.path.lexists(p):
            result.problems.append((p, "URLs are not supported here: download the file first "
                                       "(e.g. curl -O URL) and score the local copy; --engine "
                                       "ray reads s3://, gs:// and hdfs:// URIs"))
        elif os.path.isdir(p):
            found = folder_images(p, recursive, result.problems, result.skipped)
            if not found and not recursive and _nested_images(p):
                result.hints.append(f"{p} has no images at its top level but has some in "
                                    "subfolders: add -r / --recursive to score them")
            for f in found:
                add(f)
        elif not os.path.lexists(p) and glob.has_magic(p):
            matches = sorted(set(glob.glob(_case_insensitive(p), recursive=True)))
            if not matches:
                result.problems.append((p, "no file matches this pattern"))
            for m in matches:
                if os.path.isdir(m):
                    for f in folder_images(m, recursive, result.problems, result.skipped):
                        add(f)
                elif _is_image_name(m):
                    add(m)
        else:
            add(p)
    return result


def expand(paths: Iterable[str], *, recursive: bool = False) -> list[str]:
    """The files of :func:`collect`, then the paths it could not list (to fail as files)."""
    e = collect(paths, recursive=recursive)
    return e.files + [p for p, _ in e.problems]


def resolved(path: str) -> str:
    """The absolute, symlink-free form of a path: how paths are compared (``--resume``)."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return os.path.abspath(path)


def read_list(path: str) -> list[str]:
    """Paths from a text file, one a line (``-`` reads standard input); blank lines skipped.

    The list may be a pipe (``--files-from <(find ...)``); it is read as UTF-8 with
    undecodable bytes kept, as the OS gives file names."""
    if path == "-":
        stream = getattr(sys.stdin, "buffer", None)
        text = (stream.read().decode("utf-8", "surrogateescape") if stream is not None
                else sys.stdin.read())
    else:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError as e:
            raise MusiqError(f"--files-from {path}: cannot read ({e.strerror or e})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]
