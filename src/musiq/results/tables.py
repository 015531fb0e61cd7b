"""Predictions as Arrow tables (for Parquet and Ray Data): see :mod:`musiq.results.arrow`,
where the one schema per output kind now lives with the other formats' columns."""
from __future__ import annotations

from .arrow import arrow_schema, predictions_table, require_pyarrow, table_predictions

__all__ = ["arrow_schema", "predictions_table", "table_predictions", "require_pyarrow"]
