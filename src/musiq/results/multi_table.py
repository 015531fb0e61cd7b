"""Several models' predictions as one Arrow table (the Ray engine with several models).

One row per image: ``path``; one score column per model, named after the model (float64,
null where it failed); each model's extras prefixed by its name (``ava_std``, ``ava_p1`` ..
``ava_p10``; ``NAME_top1_class`` .. for ImageNet heads: the CSV's columns of its kind); each
model's own error (``NAME_error``: null when it scored; a file that could not be decoded
has the row's error in every model's); the row-level ``error`` (a failure before any model
ran: the file could not be read or decoded); then each model's logits
(``NAME_logits``, list<float64>: the model's float32 logits exactly). Column names are
decided by :func:`multi_arrow_schema` alone. Rows map onto
:class:`~musiq.results.rows.MultiPrediction` both ways (:func:`multi_predictions_table`,
:func:`table_multi_predictions`).
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import MusiqError
from ..network.outputs import output_kind
from .arrow import require_pyarrow, utf8_text
from .rows import MultiPrediction, Prediction

__all__ = ["multi_arrow_schema", "multi_predictions_table", "table_multi_predictions",
           "model_names_of"]


def multi_arrow_schema(models: Sequence[tuple[str, str]]) -> Any:
    """The ``pyarrow.Schema`` of several models' rows; ``models``: ``(name, kind)`` pairs in
    output order. Raises :class:`MusiqError` when two columns would share a name (a model
    named ``ava_std`` beside ``ava``)."""
    pa = require_pyarrow()
    fields = [pa.field("path", pa.string())]
    fields += [pa.field(name, pa.float64()) for name, _ in models]
    for name, kind in models:
        for col in output_kind(kind).csv_columns:
            t = pa.int64() if col.endswith("_class") else pa.float64()
            fields.append(pa.field(f"{name}_{col}", t))
    fields += [pa.field(f"{name}_error", pa.string()) for name, _ in models]
    fields.append(pa.field("error", pa.string()))
    fields += [pa.field(f"{name}_logits", pa.list_(pa.float64())) for name, _ in models]
    seen: set[str] = set()
    for f in fields:
        if f.name in seen:
            raise MusiqError(f"two output columns would be named '{f.name}': rename a model")
        seen.add(f.name)
    return pa.schema(fields)


def _model_cells(name: str, kind: str, p: Prediction) -> dict:
    kind_ = output_kind(kind)
    extras = {"distribution": p.distribution, "std": p.std, "top5": p.top5}
    values = kind_.csv_values(extras) if p.error is None else [None] * len(kind_.csv_columns)
    cells = {f"{name}_{col}": v for col, v in zip(kind_.csv_columns, values)}
    cells.update({name: p.score, f"{name}_error": utf8_text(p.error),
                  f"{name}_logits": p.logits})
    return cells


def multi_predictions_table(rows: Iterable[MultiPrediction],
                            models: Sequence[tuple[str, str]]) -> Any:
    """A ``pyarrow.Table`` of :class:`MultiPrediction` rows in :func:`multi_arrow_schema`'s
    columns (text through :func:`~musiq.results.arrow.utf8_text`)."""
    pa = require_pyarrow()
    schema = multi_arrow_schema(models)
    out = []
    for r in rows:
        cells = {"path": utf8_text(r.source), "error": utf8_text(r.error)}
        for name, kind in models:
            cells.update(_model_cells(name, kind, r.models[name]))
        out.append(cells)
    return pa.Table.from_pydict({n: [c[n] for c in out] for n in schema.names}, schema=schema)


def model_names_of(column_names: Sequence[str]) -> list[str]:
    """The model names of a table in :func:`multi_arrow_schema`'s columns, in order: the
    columns after ``path`` that have their ``_error`` and ``_logits`` columns."""
    cols = set(column_names)
    return [c for c in column_names[1:] if f"{c}_error" in cols and f"{c}_logits" in cols]


def _prediction(source: str, row: dict, name: str) -> Prediction:
    error, logits = row[f"{name}_error"], row[f"{name}_logits"]
    if error is not None or logits is None:
        return Prediction(source=source, error=error or row.get("error") or "not scored")
    # The extras are the model's kind's function of its logits: made here as the model made
    # them (the table's extra columns hold the same values).
    out = output_kind(len(logits)).interpret(np.array(logits, np.float32))  # float32 exactly
    extras = {k: v for k, v in out.items() if k not in ("score", "logits")}
    return Prediction(source=source, score=row[name], logits=list(logits), **extras)


def table_multi_predictions(table: Any, where: str = "table") -> list[MultiPrediction]:
    """:class:`MultiPrediction` rows from a table in :func:`multi_arrow_schema`'s columns
    (raises :class:`MusiqError` naming ``where`` for a row without a text ``path``)."""
    names = model_names_of(table.column_names)
    if not names:
        raise MusiqError(f"{where}: no model columns (NAME, NAME_error, NAME_logits)")
    out = []
    for n, row in enumerate(table.to_pylist(), 1):
        source = row.get("path")
        if not isinstance(source, str):
            raise MusiqError(f"{where} row {n}: not a result row ('path' is not text)")
        out.append(MultiPrediction(source, {m: _prediction(source, row, m) for m in names},
                                   error=row.get("error")))
    return out
