"""The Ray engine's inputs: paths, folders, globs and URIs listed as the CLI lists them, or a
table of ``bytes`` and ``path`` (a Parquet dataset, a ``ray.data.Dataset``).

Folders and globs are expanded by :func:`musiq.decoding.files.collect` (image suffixes; subfolders
only when ``recursive``); a URI folder or glob is listed with the same rules through pyarrow's
filesystem. Files are not read here: their paths travel to the decode tasks, which read them
with :func:`musiq.decoding.reading.read_source` (the local engine's checks).
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

from .decoding.decode import DEFAULT_MAX_PIXELS, max_file_bytes
from .errors import ImageError, MusiqError
from .decoding.reading import is_uri, read_source

__all__ = ["read_images", "inputs", "ray_available"]


def ray_available() -> bool:
    """True when Ray Data can be imported."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        from .extras import needs
        raise MusiqError(needs("the Ray engine (Ray Data)", "ray")) from None
    return ray

def _expand_remote(pattern: str) -> list[str]:
    """Image files matching a glob in a pyarrow filesystem URI (``s3://b/x/*.jpg``; ``**``
    descends into subfolders)."""
    import pyarrow.fs as pafs
    scheme, rest = pattern.split("://", 1)
    static = rest[:min(rest.index(c) for c in "*?[" if c in rest)].rsplit("/", 1)[0]
    fs, root = pafs.FileSystem.from_uri(f"{scheme}://{static}")
    # Filesystems report paths without the scheme: match the pattern's path part.
    prefix = rest[:len(rest) - len(rest.lstrip("/"))]
    want = rest.lstrip("/")
    infos = fs.get_file_info(pafs.FileSelector(root, recursive="**" in rest))
    return sorted(f"{scheme}://{prefix}{i.path.lstrip('/')}" for i in infos
                  if i.type == pafs.FileType.File and _is_image_name(i.path)
                  and fnmatch.fnmatch(i.path.lstrip("/"), want.replace("**/", "*")))


def _remote_folder(uri: str, recursive: bool) -> list[str]:
    """``[uri]`` for a file (or a name with an image suffix, not looked up: a list of a
    million objects costs no request each); a folder's image files otherwise."""
    if _is_image_name(uri):
        return [uri]
    import pyarrow.fs as pafs
    fs, root = pafs.FileSystem.from_uri(uri)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return [uri]
    base = uri.rstrip("/")
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=recursive))
    return sorted(f"{base}/{i.path[len(root.rstrip('/')):].lstrip('/')}" for i in infos
                  if i.type == pafs.FileType.File and _is_image_name(i.path))


def _is_image_name(name: str) -> bool:
    from .decoding.files import IMAGE_SUFFIXES
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def _uri_rows(uri: str, recursive: bool) -> list[dict]:
    try:
        found = (_expand_remote(uri) if any(c in uri for c in "*?[")
                 else _remote_folder(uri, recursive))
    except Exception as e:  # pyarrow's errors for a filesystem that cannot be listed
        first = (str(e).splitlines() or [type(e).__name__])[0]
        return [{"path": uri, "error": f"cannot list ({first})"}]
    return ([{"path": f, "error": None} for f in found]
            or [{"path": uri, "error": "no file matches this pattern"}])


def _file_rows(items: list[str], recursive: bool) -> list[dict]:
    """``{"path", "error"}`` rows for paths, folders, globs and URIs, expanded as the CLI
    expands them (:func:`musiq.decoding.files.collect`: folders give their image files, only
    with ``recursive`` those of subfolders); what cannot be listed has its ``error``."""
    # An upward import until issue 17's layout gives the listing a home below the CLI.
    from .decoding.files import collect
    rows: list[dict] = []
    local: list[str] = []
    for s in items:
        if not is_uri(s):
            local.append(s[len("file://"):] if s.startswith("file://") else s)
        else:
            rows += _uri_rows(s, recursive)
    listed = collect(local, recursive=recursive)
    rows += [{"path": f, "error": None} for f in listed.files]
    rows += [{"path": f, "error": why} for f, why in listed.problems]
    return rows


def _source_items(source: Any) -> list[str]:
    items = [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else \
        [os.fspath(s) for s in source]
    return [os.fsdecode(s) if isinstance(s, bytes) else s for s in items]


def _table_source(source: Any, items: list[str] | None,
                  parquet_columns: tuple[str, str]) -> Any:
    """A ``bytes``/``path`` Dataset for a Dataset or Parquet source; None for files."""
    ray = _ray()
    if isinstance(source, ray.data.Dataset):
        names = source.schema().names
        if "bytes" not in names or "path" not in names:
            raise MusiqError(f"a Dataset source needs 'bytes' and 'path' columns, has "
                             f"{', '.join(names)}")
        return source.select_columns(["bytes", "path"])
    parquet = [s for s in items or [] if s.rstrip("/").endswith(".parquet")]
    if not parquet:
        return None
    if len(parquet) != len(items or []):
        raise MusiqError("give either Parquet datasets or image files, not both")
    data_col, path_col = parquet_columns
    ds = ray.data.read_parquet(parquet, columns=[data_col, path_col])
    if (data_col, path_col) != ("bytes", "path"):
        ds = ds.rename_columns({data_col: "bytes", path_col: "path"})
    return ds


def _read_batch(batch: Any, max_bytes: int | None) -> Any:
    """Rows of ``path`` (and ``error``) to ``path``/``bytes``/``error``, each file read by
    :func:`musiq.decoding.reading.read_source` (its checks; a refusal fills ``error``)."""
    import pyarrow as pa
    paths = batch.column("path").to_pylist()
    errors = batch.column("error").to_pylist()
    data: list[bytes | None] = []
    for i, (path, err) in enumerate(zip(paths, errors)):
        raw = None
        if err is None:
            try:
                raw = read_source(path, max_bytes)
            except ImageError as e:
                errors[i] = e.reason
        data.append(raw)
    return pa.table({"path": pa.array(paths, pa.string()),
                     "bytes": pa.array(data, pa.large_binary()),
                     "error": pa.array(errors, pa.string())})


def read_images(source: Any, *, parquet_columns: tuple[str, str] = ("bytes", "path"),
                missing: list[str] | None = None, recursive: bool = False,
                max_bytes: int | None = max_file_bytes(DEFAULT_MAX_PIXELS)) -> Any:
    """A ``ray.data.Dataset`` of ``bytes`` and ``path`` from any accepted ``source``.

    ``source``: a ``ray.data.Dataset`` with ``bytes`` and ``path`` columns (returned as is);
    a path, folder, glob or pyarrow filesystem URI (``s3://``, ``gs://``, ``hdfs://``), or a
    list of them; a ``.parquet`` file or folder (a Parquet dataset) holding image bytes and a
    path column (``parquet_columns``: their names). Folders and globs are expanded as the
    CLI expands them (image suffixes only; subfolders only with ``recursive``). Files are read
    with the local engine's checks (:func:`musiq.decoding.reading.read_source`: regular files of at
    most ``max_bytes`` bytes); for files the Dataset has an ``error`` column too, with the
    reason a file was not read (its ``bytes`` null). Local paths that do not exist are
    appended to ``missing`` when it is given (so the caller can give them error rows).
    """
    ray = _ray()
    items = None if isinstance(source, ray.data.Dataset) else _source_items(source)
    if items is not None and not items:
        raise MusiqError("no inputs given")
    table = _table_source(source, items, parquet_columns)
    if table is not None:
        return table
    rows = _file_rows(items or [], recursive)
    if missing is not None:
        gone = [r["error"] is None and not is_uri(r["path"]) and not os.path.lexists(r["path"])
                for r in rows]
        missing += [r["path"] for r, g in zip(rows, gone) if g]
        rows = [r for r, g in zip(rows, gone) if not g]
    if not rows:
        return None
    return ray.data.from_items(rows).map_batches(
        _read_batch, fn_kwargs={"max_bytes": max_bytes}, batch_format="pyarrow")


def inputs(source: Any, skip: set[str], recursive: bool,
           parquet_columns: tuple[str, str]) -> Any:
    """The rows the decode stage reads: a ``bytes``/``path`` table, or ``path``/``error``
    rows of files (read in the decode tasks); ``skip``: normalised paths left out."""
    ray = _ray()
    items = None if isinstance(source, ray.data.Dataset) else _source_items(source)
    if items == []:
        return None
    table = _table_source(source, items, parquet_columns)
    if table is not None:
        if skip:
            table = table.filter(lambda r: r["path"] is None
                                 or os.path.normpath(str(r["path"])) not in skip)
        return table
    rows = [r for r in _file_rows(items or [], recursive)
            if os.path.normpath(r["path"]) not in skip]
    return ray.data.from_items(rows) if rows else None
