"""On-disk cache of converted models: one file per (checkpoint, musiq, runtime, precision).

A converted model (e.g. OpenVINO IR) is made once per checkpoint and kept in the user cache
(``$MUSIQ_RUNTIME_CACHE``, else ``<user cache>/musiq/runtimes``; ``$XDG_CACHE_HOME`` is
honoured). The file name is a hash of the key; the key itself (checkpoint SHA-256, musiq
version, runtime and its version, precision, format) is also stored inside the file with the
SHA-256 of the payload, so that a file that is stale (another key under this name) or
corrupt (truncated, bit-flipped) is detected, rebuilt and replaced, never used.

File layout: ``MAGIC``, 8-byte little-endian header length, header (JSON: ``key``,
``parts`` = byte sizes of the payload parts, ``sha256`` of the payload), payload (the parts
concatenated). Files are written aside and renamed (:func:`musiq.atomic.replace_with`).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..atomic import replace_with

MAGIC = b"MUSIQRT1"
FORMAT = 1


def cache_dir() -> Path:
    """``$MUSIQ_RUNTIME_CACHE`` or ``<user cache dir>/musiq/runtimes``."""
    env = os.environ.get("MUSIQ_RUNTIME_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("musiq")) / "runtimes"


@dataclass(frozen=True)
class CacheKey:
    """What a converted model depends on; any change makes another file."""

    checkpoint_sha256: str
    musiq_version: str
    runtime: str
    runtime_version: str
    precision: str

    def fields(self) -> dict:
        return {"checkpoint_sha256": self.checkpoint_sha256, "musiq": self.musiq_version,
                "runtime": self.runtime, "runtime_version": self.runtime_version,
                "precision": self.precision, "format": FORMAT}

    def filename(self) -> str:
        text = json.dumps(self.fields(), sort_keys=True)
        return f"{self.runtime}-{hashlib.sha256(text.encode()).hexdigest()[:24]}.bin"


def write_parts(path: Path, key: CacheKey, parts: Sequence[bytes]) -> None:
    """Write ``parts`` with ``key`` to ``path`` atomically (folder created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    for p in parts:
        digest.update(p)
    header = json.dumps({"key": key.fields(), "parts": [len(p) for p in parts],
                         "sha256": digest.hexdigest()}).encode()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(MAGIC + struct.pack("<Q", len(header)) + header)
            for p in parts:
                f.write(p)
            f.flush()
            os.fsync(f.fileno())

    replace_with(path, write)


def read_parts(path: Path, key: CacheKey) -> list[memoryview] | None:
    """The payload parts of ``path`` if it holds ``key`` and its payload is intact; None if
    the file is missing, stale or corrupt (the caller rebuilds it)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(MAGIC) + 8
    if len(data) < head or data[:len(MAGIC)] != MAGIC:
        return None
    (n,) = struct.unpack("<Q", data[len(MAGIC):head])
    try:
        header = json.loads(data[head:head + n])
        sizes = [int(s) for s in header["parts"]]
    except (ValueError, KeyError, TypeError):
        return None
    if header.get("key") != key.fields():
        return None
    payload = memoryview(data)[head + n:]
    if len(payload) != sum(sizes) or hashlib.sha256(payload).hexdigest() != header["sha256"]:
        return None
    out, at = [], 0
    for s in sizes:
        out.append(payload[at:at + s])
        at += s
    return out


def cached(key: CacheKey, build: Callable[[], Sequence[bytes]],
           folder: Path | None = None) -> tuple[list[memoryview], Path, bool]:
    """The parts stored under ``key``, made by ``build()`` and stored first when the file is
    missing, stale or corrupt. Returns ``(parts, path, built)``."""
    path = (folder or cache_dir()) / key.filename()
    parts = read_parts(path, key)
    if parts is not None:
        return parts, path, False
    made = [bytes(p) for p in build()]
    write_parts(path, key, made)
    return [memoryview(p) for p in made], path, True
