"""Results: one row type for a scored or failed image, and one codec for the files they are
written to (CSV, JSON lines, JSON, Parquet): the CLI's writers, ``--resume``, the report and
the Arrow tables of the Ray engine all use it.

* :mod:`.rows`: :class:`Prediction`, the row (:class:`MultiPrediction`: several models' rows
  for one image);
* :mod:`.columns`: every format's fields per model kind, cell formatting, the CSV guard;
* :mod:`.csvfmt`, :mod:`.jsonfmt`, :mod:`.arrow`, :mod:`.parquet`: each format;
* :mod:`.writers`: streaming writers; :mod:`.files`: output files (lock, resume, repair);
* :mod:`.several`, :mod:`.several_arrow`, :mod:`.several_writers`: several models' columns
  and writers (``musiq score --model a,b``);
* :mod:`.read`: :func:`read_predictions`, the one reader (:func:`~.read.file_models`: which
  models a several-model file holds).
"""
from .rows import MultiPrediction, Prediction

__all__ = ["Prediction", "MultiPrediction"]
