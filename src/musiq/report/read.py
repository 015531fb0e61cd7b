"""Read a scores file written by ``musiq score --output``: CSV, JSON lines, JSON, Parquet."""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import MusiqError


@dataclass
class ScoreRow:
    """One image's result: ``score`` None and ``error`` set when it failed;
    ``distribution``: AVA's 10 bin probabilities (scores 1..10) when present."""

    path: str
    score: float | None
    error: str | None
    std: float | None = None
    distribution: list[float] | None = None
    #: A video's ``[time, score]`` per frame (JSON/JSONL ``frame_scores``), else None.
    curve: list[list[float]] | None = None


def _num(v: object) -> float | None:
    if v is None or v == "":
        return None
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _from_mapping(d: dict, where: str) -> ScoreRow:
    if "path" not in d:
        raise MusiqError(f"{where}: not a result row (no 'path')")
    dist = d.get("distribution")
    if dist is None and "p1" in d:
        vals = [_num(d.get(f"p{i}")) for i in range(1, 11)]
        dist = vals if all(v is not None for v in vals) else None
    err = d.get("error") or None
    return ScoreRow(str(d["path"]), _num(d.get("score")), str(err) if err else None,
                    _num(d.get("std")), [float(v) for v in dist] if dist else None,
                    _curve(d.get("frame_scores")))


def _curve(frames: object) -> list[list[float]] | None:
    """``[time, score]`` pairs of a video's frames (index for a missing time)."""
    if not isinstance(frames, list) or not frames:
        return None
    out = []
    for i, f in enumerate(frames):
        s = _num(f.get("score")) if isinstance(f, dict) else None
        t = _num(f.get("time")) if isinstance(f, dict) else None
        if s is not None:
            out.append([float(i) if t is None else t, s])
    return out or None


def read_scores(path: str | os.PathLike) -> list[ScoreRow]:
    """All rows of a scores file, in file order (raises :class:`MusiqError` naming the file
    and line for anything that is not a result)."""
    path = Path(path)
    if not path.is_file():
        raise MusiqError(f"{path}: no such scores file")
    ext = path.suffix.lower()
    if ext == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise MusiqError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") \
                from None
        return [_from_mapping(d, str(path)) for d in pq.read_table(path).to_pylist()]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise MusiqError(f"{path}: not UTF-8 text ({e.reason})") from None
    if ext == ".csv":
        reader = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise MusiqError(f"{path}: not a musiq CSV (no 'path' column)")
        return [_from_mapping(r, f"{path} row {n}") for n, r in enumerate(reader, 2)]
    if ext == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise MusiqError(f"{path}: not JSON ({e})") from None
        if not isinstance(data, list):
            raise MusiqError(f"{path}: expected the JSON array of musiq score --format json")
        return [_from_mapping(d, f"{path} item {n}") for n, d in enumerate(data, 1)]
    if ext in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except ValueError:
                if n == len(text.splitlines()):
                    break  # a last line cut short by a crash
                raise MusiqError(f"{path} line {n}: not JSON") from None
            if not isinstance(d, dict):
                raise MusiqError(f"{path} line {n}: not a result row")
            rows.append(_from_mapping(d, f"{path} line {n}"))
        return rows
    raise MusiqError(f"{path}: use a .csv, .jsonl, .json or .parquet scores file")
