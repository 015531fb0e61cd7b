"""Read subjective quality labels: one image and its MOS or vote distribution per row.

The default file is a CSV with a header and the columns ``image`` (a file name relative to
the images folder) and ``mos``. Presets cover the common datasets' own files:

* ``koniq``: KonIQ-10k's ``koniq10k_scores_and_distributions.csv`` (``image_name``,
  ``MOS_zscore``: the 0-100 MOS the official model predicts);
* ``spaq``: SPAQ's score sheet saved as CSV (``Image name``, ``MOS``, 0-100);
* ``ava``: AVA's ``AVA.txt`` (space separated, no header: index, image id, then the vote
  counts for scores 1..10; images are ``<id>.jpg``);
* ``konvid``: KoNViD-1k's ``KoNViD_1k_mos.csv`` (``flickr_id``, ``mos`` 1-5; videos are
  ``<flickr_id>.mp4``), scored as videos (:mod:`musiq.video_scoring`).

Any column can also be given by name or by 0-based index. A distribution (vote counts or
probabilities over ordered bins 1..K) gives the label mean ``sum(p_k * k)`` as the MOS.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import MusiqError

Column = str | int


class LabelError(MusiqError, ValueError):
    """A label file is missing, malformed or lacks a column; the message names file and line."""


@dataclass(frozen=True)
class LabelColumns:
    """Where the labels are in a file.

    ``image``: the image column; ``mos``: the MOS column (None when only a distribution is
    given); ``distribution``: K columns of vote counts or probabilities for scores 1..K;
    ``header``: whether the first row names the columns; ``delimiter``: a character, ``" "``
    for any run of whitespace, or None to detect (comma, semicolon, tab, whitespace);
    ``image_suffix``: appended to each image name (AVA lists ids without ``.jpg``).
    """

    image: Column = "image"
    mos: Column | None = "mos"
    distribution: tuple[Column, ...] | None = None
    header: bool = True
    delimiter: str | None = None
    image_suffix: str = ""


PRESETS: dict[str, LabelColumns] = {
    "default": LabelColumns(),
    "koniq": LabelColumns(image="image_name", mos="MOS_zscore"),
    "spaq": LabelColumns(image="Image name", mos="MOS"),
    "ava": LabelColumns(image=1, mos=None, distribution=tuple(range(2, 12)), header=False,
                        delimiter=" ", image_suffix=".jpg"),
    "konvid": LabelColumns(image="flickr_id", mos="mos", image_suffix=".mp4"),
}


def preset(name: str, **overrides) -> LabelColumns:
    """A preset with some fields replaced (None values are ignored)."""
    if name not in PRESETS:
        raise LabelError(f"unknown label format '{name}'; known: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


def parse_column(text: str) -> Column:
    """A column given on the command line: an integer is a 0-based index, else a name."""
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def parse_columns(text: str) -> tuple[Column, ...]:
    """``a,b,c`` (names or indices) or ``START:END`` (indices, END exclusive)."""
    if ":" in text and "," not in text:
        lo, hi = (int(v) for v in text.split(":"))
        return tuple(range(lo, hi))
    return tuple(parse_column(t) for t in text.split(",") if t.strip())


@dataclass
class LabelItem:
    """One labelled image.

    ``name``: the image as written in the file (plus suffix); ``path``: resolved against
    the images folder; ``mos``: the label in the file's units (the distribution's mean when
    only a distribution is given); ``distribution``: normalised bin probabilities
    ``(K,)`` or None; ``line``: 1-based line in the label file.
    """

    name: str
    path: Path
    mos: float
    distribution: np.ndarray | None
    line: int


def _rows(text: str, columns: LabelColumns) -> list[tuple[int, list[str]]]:
    lines = text.splitlines()
    delim = columns.delimiter
    if delim is None:
        sample = "\n".join(lines[:20])
        try:
            delim = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
        except csv.Error:
            delim = " " if any(len(ln.split()) > 1 for ln in lines[:20]) else ","
    if delim == " ":
        rows = [(i + 1, ln.split()) for i, ln in enumerate(lines)]
    else:
        reader = csv.reader(io.StringIO(text), delimiter=delim)
        rows = [(reader.line_num, row) for row in reader]
    return [(n, [c.strip() for c in r]) for n, r in rows if any(c.strip() for c in r)]


def _index(col: Column, header: list[str] | None, file: Path, what: str, option: str) -> int:
    if isinstance(col, int):
        return col
    if header is None:
        raise LabelError(f"{file}: {what} column '{col}' given by name but the file has no "
                         f"header; give its 0-based index with {option}")
    if col in header:
        return header.index(col)
    lower = [h.lower() for h in header]
    if col.lower() in lower:
        return lower.index(col.lower())
    raise LabelError(f"{file}: no {what} column '{col}' (columns: {', '.join(header)}); "
                     f"choose one with {option}")


def _number(text: str, file: Path, line: int, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise LabelError(f"{file}:{line}: {what} '{text}' is not a number") from None
    if not np.isfinite(v):
        raise LabelError(f"{file}:{line}: {what} is {text}")
    return v


def read_labels(file: str | os.PathLike, images: str | os.PathLike | None = None,
                columns: LabelColumns = LabelColumns()) -> list[LabelItem]:
    """Every labelled row of ``file``; image paths are resolved against ``images``
    (default: the label file's folder). Raises :class:`LabelError` naming file and line.
    Whether each image exists is *not* checked here (scoring reports missing ones)."""
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LabelError(f"{file}: no such label file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LabelError(f"{file}: cannot read the label file ({e})") from None
    rows = _rows(text, columns)
    header = None
    if columns.header:
        if not rows:
            raise LabelError(f"{file}: empty label file")
        header = rows.pop(0)[1]
    if not rows:
        raise LabelError(f"{file}: no labelled rows")
    if columns.mos is None and not columns.distribution:
        raise LabelError(f"{file}: neither a MOS column nor distribution columns were given")
    i_img = _index(columns.image, header, file, "image", "--image-column")
    i_mos = (None if columns.mos is None
             else _index(columns.mos, header, file, "MOS", "--mos-column"))
    i_dist = [_index(c, header, file, "distribution", "--dist-columns")
              for c in columns.distribution or ()]
    base = Path(images) if images is not None else file.parent
    need = max([i_img, *(i_dist or [0]), i_mos if i_mos is not None else 0])
    items = []
    for line, row in rows:
        if len(row) <= need:
            raise LabelError(f"{file}:{line}: {len(row)} column(s), expected at least "
                             f"{need + 1}")
        name = row[i_img] + columns.image_suffix
        if not row[i_img]:
            raise LabelError(f"{file}:{line}: empty image name")
        dist = None
        if i_dist:
            counts = np.array([_number(row[i], file, line, "vote count") for i in i_dist])
            if (counts < 0).any() or counts.sum() <= 0:
                raise LabelError(f"{file}:{line}: the distribution {row[i_dist[0]]}.. has "
                                 "negative entries or sums to 0")
            dist = counts / counts.sum()
        if i_mos is not None:
            mos = _number(row[i_mos], file, line, "MOS")
        else:
            mos = float((dist * np.arange(1, len(dist) + 1)).sum())
        items.append(LabelItem(name, base / name, mos, dist, line))
    return items
