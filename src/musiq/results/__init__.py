"""Results: one row type for a scored or failed image, and the files they are written to."""
from .rows import Prediction

__all__ = ["Prediction"]
