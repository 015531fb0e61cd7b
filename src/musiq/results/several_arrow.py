"""Several-model rows as Arrow tables (Parquet): the columns of :mod:`musiq.results.several`.

``path``; one float64 score column per model, named after it; each model's extras prefixed
``NAME_`` as the one-model Arrow columns have them (``NAME_distribution`` list<float64>,
``NAME_std``, ``NAME_top5`` list<struct>, ``NAME_frames`` int64, ``NAME_spread``); every
``NAME_error``; ``error`` (the row's one-line :attr:`MultiPrediction.failure`, null when every
model scored); then every ``NAME_logits`` (list<float64>). Needs pyarrow.
"""
from __future__ import annotations

from typing import Any, Iterable

from .arrow import column_types, require_pyarrow, utf8_text
from .columns import VIDEO_COLUMNS, json_keys
from .rows import MultiPrediction, Prediction
from .several import ModelSet, models_in_columns, row_error

__all__ = ["several_arrow_names", "several_arrow_schema", "several_table",
           "several_table_rows", "models_from_arrow_names", "table_rows"]

_EXTRAS = ("distribution", "std", "top5")


def _own(kind: str) -> list[str]:
    """One model's extras and video columns, unprefixed, in Arrow."""
    return [k for k in json_keys(kind) if k in _EXTRAS] + list(VIDEO_COLUMNS)


def _fields(models: ModelSet) -> list[tuple[str, str, str | None]]:
    """``(column, key of a one-model row, model name or None)`` for every column."""
    out: list[tuple[str, str, str | None]] = [("path", "path", None)]
    out += [(name, "score", name) for name in models.names]
    for name, kind in models.items():
        out += [(f"{name}_{k}", k, name) for k in _own(kind)]
    out += [(f"{name}_error", "error", name) for name in models.names]
    out.append(("error", "error", None))
    return out + [(f"{name}_logits", "logits", name) for name in models.names]


def several_arrow_names(models: ModelSet) -> list[str]:
    """The column names of :func:`several_arrow_schema` (no pyarrow needed)."""
    return [c for c, _, _ in _fields(models)]


def several_arrow_schema(models: ModelSet) -> Any:
    """The ``pyarrow.Schema`` of several-model rows (see the module)."""
    pa = require_pyarrow()
    types = column_types(pa)
    return pa.schema([pa.field(c, types[key]) for c, key, _ in _fields(models)])


def several_table(rows: Iterable[MultiPrediction], models: ModelSet) -> Any:
    """A ``pyarrow.Table`` of several-model rows (text through :func:`utf8_text`)."""
    pa = require_pyarrow()
    schema = several_arrow_schema(models)
    fields = _fields(models)
    values: dict[str, list] = {c: [] for c, _, _ in fields}
    for row in rows:
        for col, key, name in fields:
            if name is None:
                v = row.source if key == "path" else row.failure
            else:
                p = row.models.get(name) or Prediction(row.source,
                                                       error=row.failure or "not scored")
                v = getattr(p, key)
            values[col].append(utf8_text(v) if key in ("path", "error") else v)
    return pa.Table.from_pydict(values, schema=schema)


def several_table_rows(table: Any, models: ModelSet, where: str = "table"
                       ) -> list[MultiPrediction]:
    """Several-model rows from a table in :func:`several_arrow_schema`'s columns."""
    from .jsonfmt import prediction_from_dict
    fields = _fields(models)
    out = []
    for n, r in enumerate(table.to_pylist(), 1):
        one: dict[str, dict] = {name: {"path": r.get("path")} for name in models.names}
        for col, key, name in fields:
            if name is not None:
                one[name][key] = r.get(col)
        preds = {name: prediction_from_dict(d, f"{where} row {n} model {name}")
                 for name, d in one.items()}
        out.append(row_error(preds[models.names[0]].source, preds, r.get("error")))
    return out


def models_from_arrow_names(names: list[str]) -> ModelSet | None:
    """The models of a several-model table's column names (None for a one-model table or
    columns that are not a several-model table's); kinds told by their columns
    (``NAME_distribution``: distribution, ``NAME_top5``: imagenet, else mos)."""
    if not names or names[0] != "path" or "score" in names or "error" not in names:
        return None
    return models_in_columns(list(names), ("_error", "_logits"),
                             ("_distribution", "_top5"), several_arrow_names)


def table_rows(table: Any, where: str = "table") -> list[Prediction] | list[MultiPrediction]:
    """The rows of any result table: one model's (:class:`Prediction`) or, when its columns
    are a several-model table's (:func:`models_from_arrow_names`), :class:`MultiPrediction`."""
    from .arrow import table_predictions
    models = models_from_arrow_names(table.column_names)
    if models is not None:
        return several_table_rows(table, models, where)
    return table_predictions(table, where)
