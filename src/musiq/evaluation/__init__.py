"""Evaluate against subjective labels: label files (:mod:`.labels`), agreement statistics
(:mod:`.metrics`), the scatter plot (:mod:`.plot`) and :func:`evaluate` (:mod:`.core`)."""
from .core import *  # noqa: F401,F403  (musiq.evaluation.evaluate & co., as before)
