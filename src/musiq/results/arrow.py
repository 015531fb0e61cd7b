"""Predictions as Arrow tables: one schema per output kind, for Parquet and Ray Data.

The columns are the JSON rows' keys (:func:`musiq.results.columns.json_keys`): ``path``,
``score`` (float64, null on failure), ``error`` (null on success), ``logits``
(list<float64>, the model's float32 logits exactly), plus ``distribution`` (list<float64>,
10 probabilities) and ``std`` for AVA-like heads or ``top5`` (list of ``class``/
``probability``/``logit``) for ImageNet-like heads. The schema depends only on the kind.
Needs pyarrow (the ``parquet`` extra).
"""
from __future__ import annotations

from typing import Any, Iterable

from ..errors import MusiqError
from .columns import json_keys
from .rows import Prediction

__all__ = ["arrow_schema", "predictions_table", "table_predictions", "require_pyarrow"]


def require_pyarrow() -> Any:
    """The pyarrow module, or a clear :class:`~musiq.errors.MusiqError` naming the extra."""
    try:
        import pyarrow
    except ImportError:  # pragma: no cover - pyarrow is in the dev extra
        from ..extras import needs
        raise MusiqError(needs("Parquet output", "parquet")) from None
    return pyarrow


def _types(pa: Any) -> dict:
    return {"path": pa.string(), "score": pa.float64(), "error": pa.string(),
            "logits": pa.list_(pa.float64()), "distribution": pa.list_(pa.float64()),
            "std": pa.float64(),
            "top5": pa.list_(pa.struct([pa.field("class", pa.int64()),
                                        pa.field("probability", pa.float64()),
                                        pa.field("logit", pa.float64())]))}


def arrow_schema(kind: str) -> Any:
    """The ``pyarrow.Schema`` of result rows for a model kind (``mos``, ``distribution``,
    ``imagenet``, ``logits``)."""
    pa = require_pyarrow()
    types = _types(pa)
    return pa.schema([pa.field(k, types[k]) for k in json_keys(kind)])


def utf8_text(s: str | None) -> str | None:
    """``s`` as valid UTF-8 text: Arrow strings are UTF-8, so a name that is not (its bytes
    kept as surrogate escapes) is written with ``\\xNN`` escapes for those bytes."""
    if s is None or s.isascii():
        return s
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate not from a file name's byte
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def predictions_table(preds: Iterable[Prediction], kind: str) -> Any:
    """A ``pyarrow.Table`` of predictions in :func:`arrow_schema`'s columns (text through
    :func:`utf8_text`)."""
    pa = require_pyarrow()
    schema = arrow_schema(kind)
    preds = list(preds)
    values = {"path": [utf8_text(p.source) for p in preds]}
    for name in schema.names[1:]:
        values[name] = [getattr(p, name) for p in preds]
    values["error"] = [utf8_text(e) for e in values["error"]]
    return pa.Table.from_pydict(values, schema=schema)


def table_predictions(table: Any, where: str = "table") -> list[Prediction]:
    """Predictions from a table in :func:`arrow_schema`'s columns (raises
    :class:`MusiqError` naming ``where`` for a row without a text ``path``)."""
    from .jsonfmt import prediction_from_dict
    return [prediction_from_dict(r, f"{where} row {n}")
            for n, r in enumerate(table.to_pylist(), 1)]
