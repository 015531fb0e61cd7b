"""Several models on the Ray engine: each image is decoded once, every model scores it.

:func:`musiq.distributed.score_dataset` with several models (a list, ``"koniq,ava"``,
``"all"`` or a :class:`~musiq.multi_scorer.MultiScorer`) runs the same CPU decode tasks and
one pool of actors that each hold **every** model: an actor rebuilds the
:class:`~musiq.multi_scorer.MultiScorer` and scores each Ray batch with it, so the pixels
are tokenised once per preprocessing (multi-scale models share their tokens) and every model
runs exactly the packed passes it would run alone. One actor pool per model fed the same
pixels measured no faster (within noise; it starts faster, runs slower once started:
benchmarks/bench_ray_multi.py, docs/distributed.md) and makes tokens once per model, needs a
pool (and a GPU share) per model and runs at its slowest pool's rate. Rows are in
:func:`musiq.results.several_arrow.several_arrow_schema`'s columns.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .distributed import ModelPayload, score_decoded
from .engine.plan import ScorerOptions
from .multi_scorer import MultiScorer
from .results.several import ModelSet
from .results.several_arrow import several_arrow_schema, several_table
from .results.rows import MultiPrediction

__all__ = ["MultiPayload", "multi_stage"]


@dataclass(frozen=True)
class MultiPayload:
    """Every model's :class:`~musiq.distributed.ModelPayload` (``name``: its output name),
    in output order. Put once in the object store."""

    models: tuple[ModelPayload, ...]

    @classmethod
    def of(cls, multi: MultiScorer, options: ScorerOptions) -> "MultiPayload":
        return cls(tuple(replace(ModelPayload.of(s, options), name=name)
                         for name, s in multi.scorers.items()))

    @property
    def kinds(self) -> list[tuple[str, str]]:
        """``(name, kind)`` of every model, for the table's columns."""
        return [(p.name, p.arch.kind) for p in self.models]

    def with_threads(self, threads: int | None) -> "MultiPayload":
        """Each model's ``threads`` option set to ``threads`` where none was asked for."""
        if not threads:
            return self
        return MultiPayload(tuple(
            p if p.options.threads is not None else
            replace(p, options=replace(p.options, threads=threads)) for p in self.models))

    def scorer(self) -> MultiScorer:
        return MultiScorer({p.name: p.scorer() for p in self.models})


class MultiModelActor:
    """Every model in one replica: pixels in, one row per image with every model's result
    (a ``map_batches`` callable class)."""

    def __init__(self, payload: Any, batch_size: int, threads: int | None) -> None:
        import ray
        if isinstance(payload, ray.ObjectRef):
            payload = ray.get(payload)
        payload = payload.with_threads(threads)
        self.multi = payload.scorer()
        self.multi.plan.apply_threads()
        self.kinds = payload.kinds
        self.batch_size = batch_size

    def __call__(self, batch: Any) -> Any:
        names = self.multi.names
        out = score_decoded(batch.to_pylist(), self.multi, self.batch_size,
                            lambda path, error: MultiPrediction.failed(path, names, error))
        return several_table(out, _model_set(self.kinds))


def multi_stage(multi: MultiScorer, options: ScorerOptions) -> tuple[type, Any, Any]:
    """The actor class, its payload and the (empty) result schema for several models."""
    payload = MultiPayload.of(multi, options)
    return MultiModelActor, payload, several_arrow_schema(_model_set(payload.kinds))


def _model_set(kinds) -> ModelSet:
    """The output columns' models from ``(name, kind)`` pairs."""
    return ModelSet(tuple(n for n, _ in kinds), tuple(k for _, k in kinds))
