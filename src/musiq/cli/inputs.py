"""Turn command-line arguments (files, folders, globs, lists of files) into image paths."""
from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import Iterable

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp",
                  ".gif"}


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def folder_images(folder: str, recursive: bool = False) -> list[str]:
    """Image files (by suffix) in a folder, sorted; with ``recursive`` in its subfolders too
    (sorted by path, hidden folders skipped)."""
    if not recursive:
        with os.scandir(folder) as entries:
            return sorted(os.path.join(folder, e.name) for e in entries
                          if e.is_file() and _is_image_name(e.name))
    out: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.join(root, f) for f in files if _is_image_name(f)]
    return sorted(out)


def expand(paths: Iterable[str], *, recursive: bool = False) -> list[str]:
    """Files as given (even without an image suffix: the content decides); folders become
    their image files; an argument that is not an existing path but holds ``*``, ``?`` or
    ``[`` is a glob (``**`` matches subfolders). Anything else is kept, to fail as a file."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            out += folder_images(p, recursive)
        elif not os.path.exists(p) and glob.has_magic(p):
            matches = sorted(glob.glob(p, recursive=True))
            if not matches:
                out.append(p)  # reported as a failed input: "no such file"
            for m in matches:
                if os.path.isdir(m):
                    out += folder_images(m, recursive)
                elif _is_image_name(m):
                    out.append(m)
        else:
            out.append(p)
    return out


def read_list(path: str) -> list[str]:
    """Paths from a text file, one a line (``-`` reads standard input); blank lines skipped."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]
