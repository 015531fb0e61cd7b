"""Score image collections on Ray Data: CPU tasks decode, a pool of model actors scores.

    >>> import ray, musiq.distributed as md
    >>> ds = md.score_dataset("s3://bucket/photos/**.jpg", "koniq", concurrency=4, num_gpus=1)
    >>> ds.write_parquet("s3://bucket/scores/")

The stages: CPU tasks read each file by path with the local engine's checks
(:func:`musiq.reading.read_source`: regular files only, size bound before reading), or take
the ``bytes`` and ``path`` columns of a Parquet dataset / ``ray.data.Dataset`` (checked by
:func:`musiq.reading.bytes_value`), and decode them with :meth:`Preprocessor.pixels <musiq.preprocessor.Preprocessor.pixels>` (the exact decoder)
and pass uint8 pixels on (``pixels`` flattened + ``height``/``width``), never float tokens;
an actor pool (``map_batches`` with a callable class) tokenises and scores them with the
:class:`~musiq.scorer.Scorer`'s own batching (length-sorted within each Ray batch). The
weights travel once, through the object store, to each actor. Every input gives exactly one
row in :func:`musiq.tables.arrow_schema`'s columns; a bad file gives a row with its error.

Needs Ray Data (``pip install 'musiq[ray]'``).
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from .architecture import Architecture
from .decode import DEFAULT_MAX_PIXELS, max_file_bytes
from .errors import ImageError, MusiqError
from .preprocessor import Preprocessor
from .reading import bytes_value, is_uri, path_value, read_source
from .scorer import Scorer, ScorerOptions, load
from .tables import arrow_schema, predictions_table

__all__ = ["score_dataset", "read_images", "ModelPayload", "ray_available"]

# Columns between the decode stage and the model actors.
_PIXEL_COLUMNS = ("path", "pixels", "height", "width", "error")


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
        raise MusiqError("the Ray engine needs Ray Data: pip install 'musiq[ray]'") from None
    return ray


# -- inputs ----------------------------------------------------------------------------------
def _expand_remote(pattern: str) -> list[str]:
    """Files matching a glob in a pyarrow filesystem URI (``s3://b/x/*.jpg``; ``**``
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
                  if i.type == pafs.FileType.File
                  and fnmatch.fnmatch(i.path.lstrip("/"), want.replace("**/", "*")))


def _file_rows(items: list[str], recursive: bool) -> list[dict]:
    """``{"path", "error"}`` rows for paths, folders, globs and URIs, expanded as the CLI
    expands them (:func:`musiq.cli.inputs.collect`: folders give their image files, only
    with ``recursive`` those of subfolders); what cannot be listed has its ``error``."""
    # An upward import until issue 17's layout gives the listing a home below the CLI.
    from .cli.inputs import collect
    rows: list[dict] = []
    local: list[str] = []
    for s in items:
        if not is_uri(s):
            local.append(s[len("file://"):] if s.startswith("file://") else s)
        elif any(c in s for c in "*?["):
            found = _expand_remote(s)
            rows += [{"path": f, "error": None} for f in found] or \
                [{"path": s, "error": "no file matches this pattern"}]
        else:
            rows.append({"path": s, "error": None})
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
    :func:`musiq.reading.read_source` (its checks; a refusal fills ``error``)."""
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
    with the local engine's checks (:func:`musiq.reading.read_source`: regular files of at
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
        gone = [r for r in rows if r["error"] is None and not is_uri(r["path"])
                and not os.path.lexists(r["path"])]
        missing += [r["path"] for r in gone]
        rows = [r for r in rows if r not in gone]
    if not rows:
        return None
    return ray.data.from_items(rows).map_batches(
        _read_batch, fn_kwargs={"max_bytes": max_bytes}, batch_format="pyarrow")


# -- the CPU decode stage ------------------------------------------------------------------------
def _decode_one(path: Any, data: Any, has_bytes: bool, preprocessor: Preprocessor,
                max_bytes: int | None) -> tuple[str, bytes, int, int, str | None]:
    """One row to ``(path, pixels, height, width, error)``; never raises."""
    source = path_value(path)
    try:
        raw = (bytes_value(data, source, max_bytes) if has_bytes
               else read_source(source, max_bytes))
        rgb = preprocessor.pixels(raw)
        return source, rgb.tobytes(), rgb.shape[0], rgb.shape[1], None
    except ImageError as e:
        return source, b"", 0, 0, e.reason
    except MemoryError:
        return source, b"", 0, 0, "out of memory while decoding"
    except Exception as e:  # one odd file never stops a run over millions
        return source, b"", 0, 0, f"{type(e).__name__}: {e}"


def _decode_batch(batch: Any, preprocessor: Preprocessor, max_bytes: int | None) -> Any:
    """Decode a batch to flattened uint8 pixels (errors become strings). Rows hold ``path``
    and either ``bytes`` (checked by :func:`musiq.reading.bytes_value`) or nothing more (the
    file is read here, by :func:`musiq.reading.read_source`), and maybe an ``error``."""
    import pyarrow as pa
    names = batch.column_names
    paths = batch.column("path").to_pylist()
    has_bytes = "bytes" in names
    data = batch.column("bytes").to_pylist() if has_bytes else [None] * len(paths)
    errors = batch.column("error").to_pylist() if "error" in names else [None] * len(paths)
    out = []
    for path, raw, err in zip(paths, data, errors):
        out.append((path_value(path), b"", 0, 0, err) if err is not None else
                   _decode_one(path, raw, has_bytes, preprocessor, max_bytes))
    cols = list(zip(*out)) if out else [[]] * len(_PIXEL_COLUMNS)
    types = (pa.string(), pa.large_binary(), pa.int32(), pa.int32(), pa.string())
    return pa.table({name: pa.array(list(col), t)
                     for name, col, t in zip(_PIXEL_COLUMNS, cols, types)})


# -- the model actors ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelPayload:
    """What each actor needs to rebuild the scorer: architecture, weights (float32 NumPy
    arrays by state-dict name) and the scorer's options. Put once in the object store."""

    arch: Architecture
    state: dict
    options: ScorerOptions
    name: str

    @classmethod
    def of(cls, scorer: Scorer, options: ScorerOptions) -> "ModelPayload":
        state = {k: v.detach().cpu().numpy() for k, v in scorer.model.state_dict().items()}
        return cls(scorer.variant, state, options, scorer.name)

    def scorer(self) -> Scorer:
        import torch
        from .model import Musiq
        net = Musiq(self.arch)
        net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.state.items()})
        return Scorer(net.eval(), options=self.options)


class _ModelActor:
    """One model replica: pixels in, result rows out (a ``map_batches`` callable class)."""

    def __init__(self, payload: Any, batch_size: int, threads: int | None) -> None:
        import ray
        import torch
        if threads:
            torch.set_num_threads(threads)
        if isinstance(payload, ray.ObjectRef):
            payload = ray.get(payload)
        self.scorer = payload.scorer()
        self.batch_size = batch_size

    def __call__(self, batch: Any) -> Any:
        from .scorer import Prediction
        rows = batch.to_pylist()
        preds: list = [None] * len(rows)
        images, where = [], []
        for i, r in enumerate(rows):
            if r["error"] is not None:
                preds[i] = Prediction(source=r["path"], error=r["error"])
            else:
                images.append(np.frombuffer(r["pixels"], np.uint8)
                              .reshape(r["height"], r["width"], 3))
                where.append(i)
        # The local engine's batching: the whole Ray batch is one window, sorted by length.
        for i, p in zip(where, self.scorer.predict_many(
                images, batch_size=self.batch_size, window=max(len(images), 1))):
            p.source = rows[i]["path"]
            preds[i] = p
        return predictions_table(preds, self.scorer.kind)


def _pool(concurrency: int | tuple[int, int]) -> Any:
    from ray.data import ActorPoolStrategy
    if isinstance(concurrency, tuple):
        return ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    if concurrency < 1:
        raise MusiqError(f"concurrency must be positive, not {concurrency}")
    return ActorPoolStrategy(size=concurrency)


def _inputs(source: Any, skip: set[str], recursive: bool,
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


def score_dataset(source: Any, model: str | os.PathLike | Scorer = "koniq", *,
                  concurrency: int | tuple[int, int] = 1, num_gpus: float = 0,
                  num_cpus: float = 1, batch_size: int = 32, model_batch_size: int = 8,
                  decode_batch_size: int = 16, decode_num_cpus: float = 1,
                  threads: int | None = None, skip_paths: Iterable[str] = (),
                  checkpoint_dir: str | os.PathLike | None = None, offline: bool | None = None,
                  options: ScorerOptions | None = None,
                  parquet_columns: tuple[str, str] = ("bytes", "path"),
                  recursive: bool = False) -> Any:
    """Score every image of ``source`` on Ray Data; one result row per input.

    ``source``: see :func:`read_images` (paths, folders, globs, filesystem URIs, a Parquet
    dataset of ``bytes``/``path``, or a ``ray.data.Dataset``); folders and globs are
    expanded as the CLI expands them (image suffixes; subfolders only with ``recursive``)
    and every file is read with the local engine's checks (:mod:`musiq.reading`). ``model``: a registry name, a
    ``.npz`` path or a loaded :class:`Scorer` (loaded once here; the weights reach each actor
    once through the object store). ``concurrency``: model actors (an int or a ``(min,
    max)`` autoscaling range); ``num_gpus``/``num_cpus``: resources per actor (fractions
    allowed: 0.5 puts two actors on a GPU); ``batch_size``: images per Ray batch to an actor,
    sorted by length there and run as forward passes of ``model_batch_size`` images;
    ``decode_batch_size``/``decode_num_cpus``: the CPU decode tasks; ``threads``: torch
    threads per actor (default: ``num_cpus`` rounded, at least 1); ``skip_paths``: paths to
    leave out (resume); ``options``: :class:`ScorerOptions` for the actors (default: device
    ``auto``: CUDA when the actor has a GPU).

    Returns a lazy ``ray.data.Dataset`` in :func:`musiq.tables.arrow_schema`'s columns
    (``path``, ``score``, ``error``, ``logits``, ``distribution``/``std`` or ``top5``).
    Scores equal :meth:`Scorer.predict_many`'s. Ray is started locally if not running.
    """
    ray = _ray()
    for name, v in (("batch_size", batch_size), ("model_batch_size", model_batch_size),
                    ("decode_batch_size", decode_batch_size)):
        if v < 1:
            raise MusiqError(f"{name} must be positive, not {v}")
    if options is None:
        options = ScorerOptions(device="auto")
    if isinstance(model, Scorer):
        scorer = model
    else:
        scorer = load(model, checkpoint_dir=checkpoint_dir, offline=offline, device="cpu")
    preprocessor = Preprocessor(scorer.preprocess_config, options.max_pixels,
                                options.exif_transpose)
    kind = scorer.kind
    if not ray.is_initialized():
        ray.init(include_dashboard=False, logging_level="WARNING")
    payload = ray.put(ModelPayload.of(scorer, options))
    _warn_if_cpus_taken(ray, concurrency, num_cpus, num_gpus)
    raw = _inputs(source, {os.path.normpath(p) for p in skip_paths}, recursive,
                  parquet_columns)
    if raw is None:
        return ray.data.from_arrow(arrow_schema(kind).empty_table())
    pixels = raw.map_batches(_decode_batch, fn_kwargs={
        "preprocessor": preprocessor, "max_bytes": max_file_bytes(options.max_pixels)},
        batch_size=decode_batch_size, batch_format="pyarrow", num_cpus=decode_num_cpus)
    return pixels.map_batches(
        _ModelActor, fn_constructor_kwargs={
            "payload": payload, "batch_size": model_batch_size,
            "threads": threads or max(1, int(round(num_cpus)))},
        batch_size=batch_size, batch_format="pyarrow", compute=_pool(concurrency),
        num_gpus=num_gpus, num_cpus=num_cpus)


def _warn_if_cpus_taken(ray: Any, concurrency: int | tuple[int, int], num_cpus: float,
                        num_gpus: float) -> None:
    cpus = ray.cluster_resources().get("CPU", 0)
    if not num_gpus and isinstance(concurrency, int) and concurrency * num_cpus >= cpus > 0:
        # CPU actors are fused with the decode stage and the read tasks need a CPU of their
        # own: actors holding every CPU stall the run (docs/distributed.md).
        import warnings
        warnings.warn(f"{concurrency} model actors x {num_cpus} CPUs take all {cpus:g} CPUs "
                      "of the cluster: the read tasks may never run; lower num_cpus "
                      "(--ray-actor-cpus)", RuntimeWarning, stacklevel=3)
