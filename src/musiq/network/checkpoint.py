"""Read official MUSIQ ``.npz`` checkpoints safely and tell which variant they are.

An official file is a zip of ``.npy`` arrays whose names are parameter paths joined with
``/``. Only ``opt/target/*`` holds model parameters; optimizer state (stored as raw 2-byte
``|V2`` bfloat16) and counters are never decoded. Every array header is read and checked
against the expected shape *before* its data is read, so a crafted header cannot make us
allocate memory, and arrays holding Python objects (pickles) are refused.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .architecture import KIND_BY_CLASSES, OFFICIAL, Architecture  # noqa: F401
from .architecture import parameter_shapes as architecture_shapes
from ..atomic import atomic_write
from ..errors import CheckpointError

PREFIX = "opt/target/"

#: More head outputs than this is not a MUSIQ checkpoint (and would let a crafted header ask
#: for gigabytes): ImageNet-21k, the largest label set in use, has 21,843.
MAX_CLASSES = 100_000
#: What reading a damaged zip member can raise (bad local header, unsupported compression or
#: encryption, CRC mismatch, a deflate stream that is not one).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, OSError,
               EOFError, ValueError, OverflowError)

def parameter_shapes(num_classes: int = 1, num_scales: int = 3) -> dict[str, tuple[int, ...]]:
    """Every model parameter of the official architecture (keys without ``opt/target/``)."""
    return architecture_shapes(Architecture(num_classes, num_scales))


@dataclass(frozen=True)
class _Header:
    member: zipfile.ZipInfo
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int  # bytes of the .npy header before the data


def _read_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> _Header:
    """The ``.npy`` header of one member; reads a few hundred bytes, never the data."""
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
    except _ZIP_ERRORS as e:
        reason = str(e)
        if "allow_pickle" in reason or "max_header_size" in reason:
            # numpy's advice to trust the file (allow_pickle=True) is never ours to give.
            reason = "the header is too large to be read safely"
        raise CheckpointError(f"{where}: invalid array header ({reason})") from None
    if any(d < 0 for d in shape):
        raise CheckpointError(f"{where}: invalid array header (negative shape {shape})")
    return _Header(info, tuple(int(d) for d in shape), bool(fortran), dtype, offset)


def _open_zip(path: Path) -> zipfile.ZipFile:
    if path.exists() and not (path.is_file() or path.is_dir()):
        # A FIFO would block and a device (/dev/zero) never end: refused unread.
        raise CheckpointError(f"{path}: not a regular file (a pipe or device); "
                              "give the path of a .npz checkpoint file")
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file") from None
    except (zipfile.BadZipFile, EOFError, ValueError, OverflowError):
        size = path.stat().st_size
        raise CheckpointError(
            f"{path}: not a readable .npz archive ({size:,} bytes) - the file is truncated "
            "(an interrupted download?) or not a checkpoint; download it again") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None


def read_headers(path: str | os.PathLike) -> dict[str, _Header]:
    """Headers of the ``opt/target/`` arrays, without reading any array data."""
    path = Path(path)
    with _open_zip(path) as zf:
        headers = {}
        for info in zf.infolist():
            name = info.filename
            if not (name.startswith(PREFIX) and name.endswith(".npy")):
                continue
            key = name[len(PREFIX):-len(".npy")]
            h = _read_header(zf, info, f"{path}: {PREFIX}{key}")
            if h.dtype.hasobject:
                raise CheckpointError(
                    f"{path}: {PREFIX}{key} holds pickled Python objects; refusing to load it "
                    "(official checkpoints hold plain float32 arrays only)")
            headers[key] = h
    if not headers:
        raise CheckpointError(
            f"{path}: no '{PREFIX}' parameters - this is not a MUSIQ checkpoint")
    return headers


def detect_variant(shapes: dict[str, tuple[int, ...]], where: str = "checkpoint") -> Architecture:
    """The architecture from the head and scale-embedding shapes; raises if they are absent or odd."""
    head = shapes.get("head/kernel")
    scale = shapes.get("Transformer/scaleembed_input/scale_embedding")
    if head is None:
        raise CheckpointError(f"{where}: missing key {PREFIX}head/kernel")
    if scale is None:
        raise CheckpointError(
            f"{where}: missing key {PREFIX}Transformer/scaleembed_input/scale_embedding")
    hidden = OFFICIAL.hidden
    if len(head) != 2 or head[0] != hidden or not 1 <= head[1] <= MAX_CLASSES:
        raise CheckpointError(
            f"{where}: {PREFIX}head/kernel has shape {head}, expected ({hidden}, classes) with "
            f"1 to {MAX_CLASSES:,} classes; not a MUSIQ checkpoint of this architecture")
    if len(scale) != 3 or scale[0] != 1 or scale[2] != hidden or scale[1] not in (1, 3):
        raise CheckpointError(
            f"{where}: {PREFIX}Transformer/scaleembed_input/scale_embedding has shape "
            f"{scale}, expected (1, 3, {hidden}) (multi-scale) or (1, 1, {hidden}) (single)")
    return replace(OFFICIAL, num_classes=head[1], num_scales=scale[1])


def validate_shapes(shapes: dict[str, tuple[int, ...]], variant: Architecture, where: str) -> None:
    """Raise naming the first missing or mis-shaped key."""
    for key, expected in architecture_shapes(variant).items():
        got = shapes.get(key)
        if got is None:
            raise CheckpointError(f"{where}: missing key {PREFIX}{key} (expected shape "
                                  f"{expected}); not a complete MUSIQ checkpoint")
        if tuple(got) != expected:
            raise CheckpointError(f"{where}: key {PREFIX}{key} has shape {tuple(got)}, "
                                  f"expected {expected}")


def _read_array(zf: zipfile.ZipFile, h: _Header, where: str) -> np.ndarray:
    if h.dtype.kind != "f" or h.dtype.itemsize not in (2, 4, 8):
        raise CheckpointError(f"{where}: dtype {h.dtype} is not a float type")
    n = int(np.prod(h.shape, dtype=np.int64))
    nbytes = n * h.dtype.itemsize
    if h.member.file_size != h.offset + nbytes:
        raise CheckpointError(f"{where}: stored size {h.member.file_size} does not match its "
                              f"header ({h.offset + nbytes} bytes); the file is damaged")
    try:  # reading the member to its end makes zipfile check its CRC
        with zf.open(h.member) as f:
            f.seek(h.offset)
            data = f.read(nbytes)
            f.read(1)
    except _ZIP_ERRORS as e:
        raise CheckpointError(f"{where}: damaged data ({e}); download the file again") from None
    if len(data) != nbytes:
        raise CheckpointError(f"{where}: truncated data; download the file again")
    a = np.frombuffer(data, dtype=h.dtype)
    a = a.reshape(h.shape[::-1]).T if h.fortran else a.reshape(h.shape)
    return np.array(a, dtype=np.float32, order="C")  # a writable copy


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], Architecture]:
    """Model parameters (keys without ``opt/target/``, float32) and the detected variant.

    Raises :class:`CheckpointError` naming the file and the first problem found.
    """
    path = Path(path)
    headers = read_headers(path)
    shapes = {k: h.shape for k, h in headers.items()}
    variant = detect_variant(shapes, str(path))
    validate_shapes(shapes, variant, str(path))
    expected = architecture_shapes(variant)
    params = {}
    with _open_zip(path) as zf:
        for key in expected:
            params[key] = _read_array(zf, headers[key], f"{path}: {PREFIX}{key}")
    return params, variant


def save_checkpoint(path: str | os.PathLike, params: dict[str, np.ndarray]) -> Path:
    """Write parameters as an official-format ``.npz`` (``opt/target/`` keys, float32).

    Written to a temporary name and renamed, so a crash never leaves a half file.
    """
    path = Path(path)
    arrays = {PREFIX + k: np.asarray(v, np.float32) for k, v in sorted(params.items())}
    with atomic_write(path, "wb") as f:  # exclusive temporary file: no planted link followed
        np.savez(f, **arrays)
    return path


_hash_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, hashed once per (path, size, mtime) in this process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _hash_cache:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _hash_cache[key] = h.hexdigest()
    return _hash_cache[key]
