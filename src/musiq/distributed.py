"""Score image collections on Ray Data: CPU tasks decode, a pool of model actors scores.

    >>> import ray, musiq.distributed as md
    >>> ds = md.score_dataset("s3://bucket/photos/**.jpg", "koniq", concurrency=4, num_gpus=1)
    >>> ds.write_parquet("s3://bucket/scores/")

The stages: raw bytes are read (``read_binary_files(..., include_paths=True)``, or a Parquet
dataset / a ``ray.data.Dataset`` with ``bytes`` and ``path`` columns); CPU tasks decode them
with :meth:`Preprocessor.pixels <musiq.preprocessor.Preprocessor.pixels>` (the exact decoder)
and pass uint8 pixels on (``pixels`` flattened + ``height``/``width``), never float tokens;
an actor pool (``map_batches`` with a callable class) tokenises and scores them with the
:class:`~musiq.scorer.Scorer`'s own batching (length-sorted within each Ray batch). The
weights travel once, through the object store, to each actor. Every input gives exactly one
row in :func:`musiq.tables.arrow_schema`'s columns; a bad file gives a row with its error.

Needs Ray Data (the ``ray`` extra; :func:`musiq.extras.install_hint`).
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, replace
from typing import Any, Iterable

import numpy as np

from .architecture import Architecture
from .errors import ImageError, MusiqError
from .engine.plan import make_plan
from .preprocessor import Preprocessor
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
        from .extras import needs
        raise MusiqError(needs("the Ray engine (Ray Data)", "ray")) from None
    return ray


# -- inputs ----------------------------------------------------------------------------------
def _is_uri(p: str) -> bool:
    return "://" in p


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


def _local_files(p: str) -> list[str]:
    import glob as globlib
    if os.path.isdir(p):
        return sorted(os.path.join(r, f) for r, _, fs in os.walk(p) for f in fs)
    if not os.path.exists(p) and globlib.has_magic(p):
        return sorted(m for m in globlib.glob(p, recursive=True) if os.path.isfile(m))
    return [p]


def read_images(source: Any, *, parquet_columns: tuple[str, str] = ("bytes", "path"),
                missing: list[str] | None = None) -> Any:
    """A ``ray.data.Dataset`` of ``bytes`` and ``path`` from any accepted ``source``.

    ``source``: a ``ray.data.Dataset`` with ``bytes`` and ``path`` columns (returned as is);
    a path, folder, glob or pyarrow filesystem URI (``s3://``, ``gs://``, ``hdfs://``), or a
    list of them; a ``.parquet`` file or folder (a Parquet dataset) holding image bytes and a
    path column (``parquet_columns``: their names). Local paths that do not exist are not
    read: they are appended to ``missing`` (so the caller can give them error rows).
    """
    ray = _ray()
    if isinstance(source, ray.data.Dataset):
        names = source.schema().names
        if "bytes" not in names or "path" not in names:
            raise MusiqError(f"a Dataset source needs 'bytes' and 'path' columns, has "
                             f"{', '.join(names)}")
        return source.select_columns(["bytes", "path"])
    items = [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else \
        [os.fspath(s) for s in source]
    if not items:
        raise MusiqError("no inputs given")
    parquet = [s for s in items if s.rstrip("/").endswith(".parquet")]
    if parquet:
        if len(parquet) != len(items):
            raise MusiqError("give either Parquet datasets or image files, not both")
        data_col, path_col = parquet_columns
        ds = ray.data.read_parquet(parquet, columns=[data_col, path_col])
        if (data_col, path_col) != ("bytes", "path"):
            ds = ds.rename_columns({data_col: "bytes", path_col: "path"})
        return ds
    files: list[str] = []
    for s in items:
        if _is_uri(s) and not s.startswith("file://"):
            files += _expand_remote(s) if any(c in s for c in "*?[") else [s]
        else:
            for f in _local_files(s[len("file://"):] if s.startswith("file://") else s):
                if os.path.isfile(f):
                    files.append(f)
                elif missing is not None:
                    missing.append(f)
                else:
                    raise MusiqError(f"{f}: no such file")
    if not files:
        return None
    # Paths are passed as given; Ray reports them back absolute for local files, so the
    # original spelling is restored after the read (every path comes back as given).
    return ray.data.read_binary_files(files, include_paths=True, ignore_missing_paths=False)


# -- the CPU decode stage ------------------------------------------------------------------------
def _decode_batch(batch: dict, preprocessor: Preprocessor) -> dict:
    """Decode a batch of raw files to flattened uint8 pixels (errors become strings)."""
    out: dict[str, list] = {c: [] for c in _PIXEL_COLUMNS}
    for data, path in zip(batch["bytes"], batch["path"]):
        pixels, h, w, err = b"", 0, 0, None
        try:
            if data is None:
                raise ImageError(str(path), "no such file")
            rgb = preprocessor.pixels(bytes(data))
            h, w = rgb.shape[:2]
            pixels = rgb.tobytes()
        except ImageError as e:
            err = e.reason
        except MemoryError:
            err = "out of memory while decoding"
        except Exception as e:  # one odd file never stops a run over millions
            err = f"{type(e).__name__}: {e}"
        out["path"].append(str(path))
        out["pixels"].append(pixels)
        out["height"].append(h)
        out["width"].append(w)
        out["error"].append(err)
    import pyarrow as pa
    return pa.table({"path": pa.array(out["path"], pa.string()),
                     "pixels": pa.array(out["pixels"], pa.large_binary()),
                     "height": pa.array(out["height"], pa.int32()),
                     "width": pa.array(out["width"], pa.int32()),
                     "error": pa.array(out["error"], pa.string())})


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
        if isinstance(payload, ray.ObjectRef):
            payload = ray.get(payload)
        if threads and payload.options.threads is None:
            payload = replace(payload, options=replace(payload.options, threads=threads))
        self.scorer = payload.scorer()
        self.scorer.plan.apply_threads()
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


def _restore_paths(batch: Any, given: dict) -> Any:
    import pyarrow as pa
    paths = [given.get(p, p) for p in batch.column("path").to_pylist()]
    return batch.set_column(batch.schema.get_field_index("path"), "path",
                            pa.array(paths, pa.string()))


def score_dataset(source: Any, model: str | os.PathLike | Scorer = "koniq", *,
                  concurrency: int | tuple[int, int] = 1, num_gpus: float = 0,
                  num_cpus: float = 1, batch_size: int = 32, model_batch_size: int = 8,
                  decode_batch_size: int = 16, decode_num_cpus: float = 1,
                  threads: int | None = None, skip_paths: Iterable[str] = (),
                  checkpoint_dir: str | os.PathLike | None = None, offline: bool | None = None,
                  options: ScorerOptions | None = None,
                  parquet_columns: tuple[str, str] = ("bytes", "path")) -> Any:
    """Score every image of ``source`` on Ray Data; one result row per input.

    ``source``: see :func:`read_images` (paths, folders, globs, filesystem URIs, a Parquet
    dataset of ``bytes``/``path``, or a ``ray.data.Dataset``). ``model``: a registry name, a
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
    # The decode tasks run the plan's worker preprocessing (host, never a GPU context).
    preprocessor = make_plan(options, scorer.variant).worker_preprocessor()
    kind = scorer.kind
    if not ray.is_initialized():
        ray.init(include_dashboard=False, logging_level="WARNING")
    payload = ray.put(ModelPayload.of(scorer, options))
    cpus = ray.cluster_resources().get("CPU", 0)
    if not num_gpus and isinstance(concurrency, int) and concurrency * num_cpus >= cpus > 0:
        # CPU actors are fused with the decode stage and the read tasks need a CPU of their
        # own: actors holding every CPU stall the run (docs/distributed.md).
        import warnings
        warnings.warn(f"{concurrency} model actors x {num_cpus} CPUs take all {cpus:g} CPUs "
                      "of the cluster: the read tasks may never run; lower num_cpus "
                      "(--ray-actor-cpus)", RuntimeWarning, stacklevel=2)

    skip = {os.path.normpath(p) for p in skip_paths}
    missing: list[str] = []
    given: dict[str, str] = {}
    if not isinstance(source, ray.data.Dataset):
        items = [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else \
            [os.fspath(s) for s in source]
        if skip:
            items = [s for s in items if os.path.normpath(s) not in skip]
        # Ray reports local paths absolute; results name them as the caller did.
        given = {os.path.abspath(s): s for s in items if not _is_uri(s) and os.path.isfile(s)}
        source = items
    if isinstance(source, list) and not source:
        raw = None
    else:
        raw = read_images(source, parquet_columns=parquet_columns, missing=missing)
    missing = [m for m in missing if os.path.normpath(m) not in skip]
    schema = arrow_schema(kind)
    parts = []
    if raw is not None:
        if skip and not given:
            raw = raw.filter(lambda r: os.path.normpath(r["path"]) not in skip)
        pixels = raw.map_batches(_decode_batch, fn_kwargs={"preprocessor": preprocessor},
                                 batch_size=decode_batch_size, batch_format="pyarrow",
                                 num_cpus=decode_num_cpus)
        scored = pixels.map_batches(
            _ModelActor, fn_constructor_kwargs={
                "payload": payload, "batch_size": model_batch_size,
                "threads": threads or max(1, int(round(num_cpus)))},
            batch_size=batch_size, batch_format="pyarrow", compute=_pool(concurrency),
            num_gpus=num_gpus, num_cpus=num_cpus)
        if given:
            scored = scored.map_batches(_restore_paths, fn_kwargs={"given": given},
                                        batch_format="pyarrow", batch_size=None)
        parts.append(scored)
    if missing:
        from .scorer import Prediction
        parts.append(ray.data.from_arrow(predictions_table(
            [Prediction(source=m, error="no such file") for m in missing], kind)))
    if not parts:
        return ray.data.from_arrow(schema.empty_table())
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
