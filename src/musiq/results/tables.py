"""Predictions as Arrow tables (for Parquet and Ray Data): see :mod:`musiq.results.arrow`,
where the one schema per output kind now lives with the other formats' columns, and
:mod:`musiq.results.several_arrow` for several models' rows (:func:`table_rows` reads
either)."""
from __future__ import annotations

from .arrow import arrow_schema, predictions_table, require_pyarrow, table_predictions
from .several_arrow import (models_from_arrow_names, several_arrow_schema, several_table,
                            several_table_rows, table_rows)

__all__ = ["arrow_schema", "predictions_table", "table_predictions", "require_pyarrow",
           "several_arrow_schema", "several_table", "several_table_rows",
           "models_from_arrow_names", "table_rows"]
