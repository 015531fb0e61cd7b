"""Score image collections on Ray Data: CPU tasks decode, a pool of model actors scores.

    >>> import ray, musiq.distributed as md
    >>> ds = md.score_dataset("s3://bucket/photos/**.jpg", "koniq", concurrency=4, num_gpus=1)
    >>> ds.write_parquet("s3://bucket/scores/")

The stages: CPU tasks read each file by path with the local engine's checks
(:func:`musiq.decoding.reading.read_source`: regular files only, size bound before reading), or take
the ``bytes`` and ``path`` columns of a Parquet dataset / ``ray.data.Dataset`` (checked by
:func:`musiq.decoding.reading.bytes_value`), and decode them with
:meth:`Preprocessor.pixels <musiq.tokens.preprocessor.Preprocessor.pixels>` (the exact decoder)
and pass uint8 pixels on (``pixels`` flattened + ``height``/``width``), never float tokens;
an actor pool (``map_batches`` with a callable class) tokenises and scores them with the
:class:`~musiq.scorer.Scorer`'s own batching (length-sorted within each Ray batch). The
weights travel once, through the object store, to each actor. Every input gives exactly one
row in :func:`musiq.results.tables.arrow_schema`'s columns; a bad file gives a row with its error.

Needs Ray Data (the ``ray`` extra; :func:`musiq.extras.install_hint`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Iterable

import numpy as np

from .network.architecture import Architecture
from .decoding.decode import max_file_bytes
from .distributed_inputs import _ray, ray_available, read_images
from .distributed_inputs import inputs as _inputs
from .errors import MusiqError
from .engine.plan import make_plan
from .failures import describe_failure
from .tokens.preprocessor import Preprocessor
from .decoding.reading import bytes_value, path_value, read_source
from .multi_scorer import MultiScorer
from .scorer import Scorer, ScorerOptions, load
from .results.tables import arrow_schema, predictions_table

__all__ = ["score_dataset", "read_images", "ModelPayload", "ray_available"]

# Columns between the decode stage and the model actors.
_PIXEL_COLUMNS = ("path", "pixels", "height", "width", "error")


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
    except Exception as e:  # one odd file never stops a run over millions
        return source, b"", 0, 0, describe_failure(e, "decoding")


def _decode_batch(batch: Any, preprocessor: Preprocessor, max_bytes: int | None) -> Any:
    """Decode a batch to flattened uint8 pixels (errors become strings). Rows hold ``path``
    and either ``bytes`` (checked by :func:`musiq.decoding.reading.bytes_value`) or nothing more (the
    file is read here, by :func:`musiq.decoding.reading.read_source`), and maybe an ``error``."""
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
        from .network.model import Musiq
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
        preds = score_decoded(batch.to_pylist(), self.scorer, self.batch_size,
                              lambda path, error: Prediction(source=path, error=error))
        return predictions_table(preds, self.scorer.kind)


def score_decoded(rows: list[dict], scorer: Any, batch_size: int, failed) -> list:
    """The result rows of one decoded Ray batch, in its order: the images scored by
    ``scorer`` (a Scorer or a MultiScorer) as the local engine batches them (the whole Ray
    batch is one window, sorted by length); ``failed(path, error)`` is the row of an image
    that could not be decoded. Every row is named by its input's path."""
    out: list = [None] * len(rows)
    images, where = [], []
    for i, r in enumerate(rows):
        if r["error"] is not None:
            out[i] = failed(r["path"], r["error"])
        else:
            images.append(np.frombuffer(r["pixels"], np.uint8)
                          .reshape(r["height"], r["width"], 3))
            where.append(i)
    for i, p in zip(where, scorer.predict_many(images, batch_size=batch_size,
                                               window=max(len(images), 1))):
        p.source = rows[i]["path"]
        for one in getattr(p, "models", {}).values():  # several models: each one's too
            one.source = p.source
        out[i] = p
    return out


def _pool(concurrency: int | tuple[int, int]) -> Any:
    from ray.data import ActorPoolStrategy
    if isinstance(concurrency, tuple):
        return ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    if concurrency < 1:
        raise MusiqError(f"concurrency must be positive, not {concurrency}")
    return ActorPoolStrategy(size=concurrency)


def score_dataset(source: Any, model: Any = "koniq", *,
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
    and every file is read with the local engine's checks (:mod:`musiq.decoding.reading`).
    ``model``: a registry name, a ``.npz`` path or a loaded :class:`Scorer` (loaded once here; the weights reach each actor
    once through the object store). ``concurrency``: model actors (an int or a ``(min,
    max)`` autoscaling range); ``num_gpus``/``num_cpus``: resources per actor (fractions
    allowed: 0.5 puts two actors on a GPU); ``batch_size``: images per Ray batch to an actor,
    sorted by length there and run as forward passes of ``model_batch_size`` images;
    ``decode_batch_size``/``decode_num_cpus``: the CPU decode tasks; ``threads``: torch
    threads per actor (default: ``num_cpus`` rounded, at least 1); ``skip_paths``: paths to
    leave out (resume); ``options``: :class:`ScorerOptions` for the actors (default: device
    ``auto``: CUDA when the actor has a GPU).

    Several models (a list of names/paths, ``"koniq,ava"``, ``"all"`` or a loaded
    :class:`~musiq.multi_scorer.MultiScorer`): each image is decoded once and every actor
    holds every model (:mod:`musiq.distributed_multi`); the models share ``options``.

    Returns a lazy ``ray.data.Dataset`` in :func:`musiq.results.tables.arrow_schema`'s columns
    (``path``, ``score``, ``error``, ``logits``, ``distribution``/``std`` or ``top5``), or
    for several models :func:`musiq.results.several_arrow.several_arrow_schema`'s (a score column
    per model named after it, ``NAME_std`` ..., ``NAME_error``, ``error``, ``NAME_logits``).
    Scores equal :meth:`Scorer.predict_many`'s. Ray is started locally if not running.
    """
    ray = _ray()
    for name, v in (("batch_size", batch_size), ("model_batch_size", model_batch_size),
                    ("decode_batch_size", decode_batch_size)):
        if v < 1:
            raise MusiqError(f"{name} must be positive, not {v}")
    if options is None:
        options = ScorerOptions(device="auto")
    scorer = model if isinstance(model, (Scorer, MultiScorer)) else load(
        model, checkpoint_dir=checkpoint_dir, offline=offline, device="cpu")
    actor, payload, schema = _stage(scorer, options)
    # The decode tasks run the plan's worker preprocessing (host, never a GPU context).
    lead = scorer.lead if isinstance(scorer, MultiScorer) else scorer
    preprocessor = make_plan(options, lead.variant).worker_preprocessor()
    if not ray.is_initialized():
        ray.init(include_dashboard=False, logging_level="WARNING")
    payload = ray.put(payload)
    _warn_if_cpus_taken(ray, concurrency, num_cpus, num_gpus)
    raw = _inputs(source, {os.path.normpath(p) for p in skip_paths}, recursive,
                  parquet_columns)
    if raw is None:
        return ray.data.from_arrow(schema.empty_table())
    pixels = raw.map_batches(_decode_batch, fn_kwargs={
        "preprocessor": preprocessor, "max_bytes": max_file_bytes(options.max_pixels)},
        batch_size=decode_batch_size, batch_format="pyarrow", num_cpus=decode_num_cpus)
    return pixels.map_batches(
        actor, fn_constructor_kwargs={
            "payload": payload, "batch_size": model_batch_size,
            "threads": threads or max(1, int(round(num_cpus)))},
        batch_size=batch_size, batch_format="pyarrow", compute=_pool(concurrency),
        num_gpus=num_gpus, num_cpus=num_cpus)


def _stage(scorer: Scorer | MultiScorer, options: ScorerOptions) -> tuple[type, Any, Any]:
    """The model actors' class, their payload and the result schema: one model's, or every
    model's in each actor (:mod:`musiq.distributed_multi`)."""
    if isinstance(scorer, MultiScorer):
        from .distributed_multi import multi_stage
        return multi_stage(scorer, options)
    return _ModelActor, ModelPayload.of(scorer, options), arrow_schema(scorer.kind)


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
