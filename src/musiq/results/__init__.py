"""Results: one row type for a scored or failed image, and one codec for the files they are
written to (CSV, JSON lines, JSON, Parquet): the CLI's writers, ``--resume``, the report and
the Arrow tables of the Ray engine all use it.

* :mod:`.rows`: :class:`Prediction`, the row;
* :mod:`.columns`: every format's fields per model kind, cell formatting, the CSV guard;
* :mod:`.csvfmt`, :mod:`.jsonfmt`, :mod:`.arrow`, :mod:`.parquet`: each format;
* :mod:`.writers`: streaming writers; :mod:`.files`: output files (lock, resume, repair);
* :mod:`.read`: :func:`read_predictions`, the one reader.
"""
from .rows import Prediction

__all__ = ["Prediction"]
