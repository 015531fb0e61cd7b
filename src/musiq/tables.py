"""Predictions as Arrow tables: one schema per output kind, for Parquet and Ray Data.

The columns are the CLI's outputs: ``path``, ``score`` (float64, null on failure), ``error``
(null on success), ``logits`` (list<float32>), plus ``distribution`` (list<float64>, 10
probabilities) and ``std`` for AVA-like heads or ``top5`` (list of ``class``/``probability``/
``logit``) for ImageNet-like heads. The schema depends only on the kind, never on the data.
Needs pyarrow (``pip install musiq[parquet]``).
"""
from __future__ import annotations

from typing import Any, Iterable

from .outputs import output_kind
from .scorer import Prediction
from .video_rows import frame_rows

__all__ = ["arrow_schema", "predictions_table", "table_predictions", "require_pyarrow"]


def require_pyarrow() -> Any:
    """The pyarrow module, or a clear :class:`~musiq.errors.MusiqError` naming the extra."""
    try:
        import pyarrow
    except ImportError:  # pragma: no cover - pyarrow is in the dev extra
        from .errors import MusiqError
        raise MusiqError("Parquet output needs pyarrow: pip install 'musiq[parquet]'") from None
    return pyarrow


def arrow_schema(kind: str, per_frame: bool = False) -> Any:
    """The ``pyarrow.Schema`` of result rows for a model kind (``mos``, ``distribution``,
    ``imagenet``, ``logits``): one row per file, with a video's ``frames`` (int64) and
    ``spread`` last, or (``per_frame``) one per video frame, ``frame`` (int64) and ``time``
    (float64, seconds) after ``path`` (:mod:`musiq.video_rows`)."""
    pa = require_pyarrow()
    fields = [pa.field("path", pa.string())]
    if per_frame:
        fields += [pa.field("frame", pa.int64()), pa.field("time", pa.float64())]
    fields += [pa.field("score", pa.float64()),
               pa.field("error", pa.string()), pa.field("logits", pa.list_(pa.float32()))]
    extras = output_kind(kind).extras
    if "distribution" in extras:
        fields += [pa.field("distribution", pa.list_(pa.float64())),
                   pa.field("std", pa.float64())]
    if "top5" in extras:
        fields.append(pa.field("top5", pa.list_(pa.struct([
            pa.field("class", pa.int64()), pa.field("probability", pa.float64()),
            pa.field("logit", pa.float64())]))))
    if not per_frame:
        fields += [pa.field("frames", pa.int64()), pa.field("spread", pa.float64())]
    return pa.schema(fields)


def predictions_table(preds: Iterable[Prediction], kind: str, per_frame: bool = False) -> Any:
    """A ``pyarrow.Table`` of predictions in :func:`arrow_schema`'s columns."""
    pa = require_pyarrow()
    schema = arrow_schema(kind, per_frame)
    preds = list(preds)
    if per_frame:
        rows = [r for p in preds for r in frame_rows(p)]
        return pa.Table.from_pydict({n: [r.get(n) for r in rows] for n in schema.names},
                                    schema=schema)
    columns = {"path": [p.source for p in preds]}
    for name in schema.names[1:]:
        columns[name] = [getattr(p, name) for p in preds]
    return pa.Table.from_pydict(columns, schema=schema)


def table_predictions(table: Any) -> list[Prediction]:
    """Predictions from a table written with :func:`arrow_schema`'s columns."""
    rows = table.to_pylist()
    fields = ("score", "error", "logits", "distribution", "std", "top5", "frames", "spread")
    return [Prediction(source=r["path"], **{k: r.get(k) for k in fields}) for r in rows]
