"""Predictions as Arrow tables: one schema per output kind, for Parquet and Ray Data.

The columns are the JSON rows' keys (:func:`musiq.results.columns.json_keys`): ``path``,
``score`` (float64, null on failure), ``error`` (null on success), ``logits``
(list<float64>, the model's float32 logits exactly), plus ``distribution`` (list<float64>,
10 probabilities) and ``std`` for AVA-like heads or ``top5`` (list of ``class``/
``probability``/``logit``) for ImageNet-like heads, then a video's ``frames`` (int64) and
``spread`` (float64), null for images. ``per_frame`` (``--per-frame``): one row per video frame
(:mod:`musiq.results.frames`), ``frame`` (int64) and ``time`` (float64, seconds) after
``path`` and no video columns. The schema depends only on the kind and ``per_frame``.
Needs pyarrow (the ``parquet`` extra).
"""
from __future__ import annotations

from typing import Any, Iterable

from ..errors import MusiqError
from .columns import FRAME_COLUMNS, VIDEO_KEYS, json_keys
from .frames import frame_rows
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


def column_types(pa: Any) -> dict:
    """The Arrow type of every result column, by its one-model name."""
    return {"path": pa.string(), "score": pa.float64(), "error": pa.string(),
            "logits": pa.list_(pa.float64()), "distribution": pa.list_(pa.float64()),
            "std": pa.float64(),
            "top5": pa.list_(pa.struct([pa.field("class", pa.int64()),
                                        pa.field("probability", pa.float64()),
                                        pa.field("logit", pa.float64())])),
            "frames": pa.int64(), "spread": pa.float64(), "frame": pa.int64(),
            "time": pa.float64()}


def arrow_schema(kind: str, per_frame: bool = False) -> Any:
    """The ``pyarrow.Schema`` of result rows for a model kind (``mos``, ``distribution``,
    ``imagenet``, ``logits``), per file or (``per_frame``) per video frame."""
    pa = require_pyarrow()
    types = column_types(pa)
    keys = [k for k in json_keys(kind) if k != "frame_scores"]
    if per_frame:
        keys = [k for k in keys if k not in VIDEO_KEYS]
        keys[1:1] = FRAME_COLUMNS
    return pa.schema([pa.field(k, types[k]) for k in keys])


def conform(table: Any, schema: Any) -> Any:
    """``table`` in ``schema``'s columns and types: a column it lacks (a file from before
    videos has no ``frames``, ``spread``) is all null."""
    pa = require_pyarrow()
    cols = [table.column(f.name).cast(f.type) if f.name in table.column_names
            else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def utf8_text(s: str | None) -> str | None:
    """``s`` as valid UTF-8 text: Arrow strings are UTF-8, so a name that is not (its bytes
    kept as surrogate escapes) is written with ``\\xNN`` escapes for those bytes."""
    if s is None or s.isascii():
        return s
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate not from a file name's byte
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def predictions_table(preds: Iterable[Prediction], kind: str, per_frame: bool = False) -> Any:
    """A ``pyarrow.Table`` of predictions in :func:`arrow_schema`'s columns (text through
    :func:`utf8_text`); ``per_frame``: a video's frames as rows."""
    pa = require_pyarrow()
    schema = arrow_schema(kind, per_frame)
    rows = [r for p in preds for r in frame_rows(p)] if per_frame else \
        [{"path": p.source, **{n: getattr(p, n) for n in schema.names[1:]}} for p in preds]
    values = {n: [r.get(n) for r in rows] for n in schema.names}
    values["path"] = [utf8_text(s) for s in values["path"]]
    values["error"] = [utf8_text(e) for e in values["error"]]
    return pa.Table.from_pydict(values, schema=schema)


def table_predictions(table: Any, where: str = "table") -> list[Prediction]:
    """Predictions from a table in :func:`arrow_schema`'s columns (raises
    :class:`MusiqError` naming ``where`` for a row without a text ``path``)."""
    from .jsonfmt import prediction_from_dict
    return [prediction_from_dict(r, f"{where} row {n}")
            for n, r in enumerate(table.to_pylist(), 1)]
