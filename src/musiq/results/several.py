"""The fields of a several-model result row (:class:`MultiPrediction`), per format.

One place decides every several-model column, from the models' names and kinds only (never
from the data), as :mod:`musiq.results.columns` does for one model:

* JSON / JSON lines: ``{"path", "error", "models": {NAME: {...}}}``, each model's object in
  :func:`model_keys` (``score, error, logits``, its kind's extras, the video keys), every key
  in every row, models in the order given;
* CSV: ``path``, one score column per model named after it, each model's own columns
  prefixed by ``NAME_`` (``ava_std``, ``ava_p1``..``ava_p10``, ``NAME_top1_class``...,
  ``NAME_frames``, ``NAME_spread``), each model's ``NAME_error``, then ``error``: the row's
  :attr:`MultiPrediction.failure` (empty when every model scored), so ``error`` being empty
  means the whole row is good;
* Arrow / Parquet (:mod:`musiq.results.several_arrow`): the same, with JSON's extras
  (``NAME_distribution`` list, ``NAME_std``, ``NAME_top5``) and ``NAME_logits`` last.

A row reads back exactly: each model's error is its ``NAME_error`` cell, and the row's own
``error`` (a failure before any model ran) is the ``error`` cell when that differs from the
models' one-line summary (:func:`row_error`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

from ..errors import MusiqError
from ..network.outputs import output_kind
from .columns import (VIDEO_COLUMNS, check_model_names, csv_guard, csv_values, json_keys,
                      name_columns, prediction_from_cells, row_dict)
from .rows import MultiPrediction, Prediction

__all__ = ["ModelSet", "model_keys", "several_row_dict", "several_csv_header",
           "several_csv_values", "several_from_cells", "models_from_csv_header", "models_in_columns",
           "row_error"]


@dataclass(frozen=True)
class ModelSet:
    """The models of a several-model output, in column order: ``names`` and their ``kinds``
    (``mos``, ``distribution``, ``imagenet``, ``logits``)."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.kinds):
            raise ValueError("a ModelSet needs one kind per name")
        check_model_names(list(self.names))
        columns = several_csv_header(self) + [f"{n}_logits" for n in self.names]
        if len(set(columns)) != len(columns):
            twice = sorted({c for c in columns if columns.count(c) > 1})
            raise MusiqError(f"the models' output columns clash ({', '.join(twice)}): rename "
                             "a model's file")

    @classmethod
    def of(cls, kinds: Mapping[str, str]) -> "ModelSet":
        """From ``{name: kind}`` in order (e.g. ``{n: s.kind for n, s in
        multi.scorers.items()}``)."""
        return cls(tuple(kinds), tuple(kinds.values()))

    def items(self) -> Iterator[tuple[str, str]]:
        return zip(self.names, self.kinds)

    def reordered(self, names: list[str]) -> "ModelSet":
        """The same models in the order of ``names`` (the same set)."""
        kind = dict(self.items())
        return ModelSet(tuple(names), tuple(kind[n] for n in names))


def model_keys(kind: str) -> tuple[str, ...]:
    """Keys of one model's object in a several-model JSON row: :func:`json_keys` less
    ``path``."""
    return tuple(k for k in json_keys(kind) if k != "path")


def several_row_dict(row: MultiPrediction, models: ModelSet) -> dict:
    """A JSON-ready several-model row with every key of every model (null where absent), the
    models in ``models``' order; a model missing from ``row`` is written as failed with the
    row's error."""
    out = {}
    for name, kind in models.items():
        p = row.models.get(name) or Prediction(row.source, error=row.failure or "not scored")
        d = row_dict(p, kind)
        out[name] = {k: d[k] for k in model_keys(kind)}
    return {"path": row.source, "error": row.error, "models": out}


def own_columns(kind: str) -> list[str]:
    """One model's CSV columns besides its score and error, unprefixed: its kind's columns,
    ImageNet's class names, then :data:`VIDEO_COLUMNS`."""
    return [*output_kind(kind).csv_columns, *name_columns(kind), *VIDEO_COLUMNS]


def several_csv_header(models: ModelSet) -> list[str]:
    """CSV columns: ``path``, the models' scores (named after them), every model's own
    columns prefixed ``NAME_``, every ``NAME_error``, then ``error`` (see the module)."""
    cols = ["path", *models.names]
    for name, kind in models.items():
        cols += [f"{name}_{c}" for c in own_columns(kind)]
    return cols + [f"{name}_error" for name in models.names] + ["error"]


def several_csv_values(row: MultiPrediction, columns: list[str], models: ModelSet
                       ) -> list[str]:
    """The cells of ``row`` for a CSV with these ``columns`` (:func:`several_csv_header`),
    each model's cells as :func:`musiq.results.columns.csv_values` writes them."""
    cells = {"path": csv_guard(row.source), "error": csv_guard(row.failure or "")}
    for name, kind in models.items():
        p = row.models.get(name) or Prediction(row.source, error=row.failure or "not scored")
        own = own_columns(kind)
        values = csv_values(p, ["score", "error", *own])
        cells[name], cells[f"{name}_error"] = values[0], values[1]
        cells.update({f"{name}_{c}": v for c, v in zip(own, values[2:])})
    return [cells.get(c, "") for c in columns]


def row_error(source: str, models: dict[str, Prediction], error_cell: str | None
              ) -> MultiPrediction:
    """A row read back: ``error_cell`` (the written row's ``error``) is the row's own error
    unless it is the models' summary (:attr:`MultiPrediction.failure`)."""
    row = MultiPrediction(source, models)
    if error_cell and error_cell != row.failure:
        row.error = error_cell
    return row


def several_from_cells(cells: dict[str, str], models: ModelSet) -> MultiPrediction:
    """A :class:`MultiPrediction` from one CSV row (column -> cell), undoing
    :func:`several_csv_values` (formula guards removed)."""
    preds = {}
    for name, kind in models.items():
        own = {c: cells.get(f"{name}_{c}") for c in own_columns(kind)}
        preds[name] = prediction_from_cells({"path": cells.get("path"), "score": cells.get(name),
                                             "error": cells.get(f"{name}_error"), **own})
    first = prediction_from_cells({"path": cells.get("path"), "error": cells.get("error")})
    return row_error(first.source, preds, first.error)


def models_from_csv_header(header: list[str]) -> ModelSet | None:
    """The models of a several-model CSV header (None for one model's, or a header that is
    not a several-model one); kinds are told by their columns (``NAME_p1``: distribution,
    ``NAME_top1_class``: imagenet, else mos)."""
    if not header or header[0] != "path" or "score" in header or header[-1] != "error":
        return None
    return models_in_columns(header, ("_error",), ("_p1", "_top1_class"), several_csv_header)


def models_in_columns(columns: list[str], own: tuple[str, ...], marks: tuple[str, str],
                      expected) -> ModelSet | None:
    """The models of several-model ``columns`` (CSV or Arrow): the columns after ``path``
    that have each of their ``own`` suffixed columns; a model's kind is told by its
    ``marks`` column (distribution's, then ImageNet's; else mos). None unless
    ``expected(models)`` gives exactly ``columns``."""
    names = []
    for col in columns[1:]:
        if not all(f"{col}{suffix}" in columns for suffix in own):
            break
        names.append(col)
    kinds = tuple("distribution" if f"{n}{marks[0]}" in columns else
                  "imagenet" if f"{n}{marks[1]}" in columns else "mos" for n in names)
    try:
        models = ModelSet(tuple(names), kinds) if names else None
    except (MusiqError, ValueError):
        return None
    return models if models is not None and expected(models) == list(columns) else None
