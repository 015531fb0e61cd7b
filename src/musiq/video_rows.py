"""How video results are laid out in tables: see :mod:`musiq.results.frames` (the codec),
where this now lives with the other formats' columns."""
from __future__ import annotations

from .results.columns import FRAME_COLUMNS, VIDEO_COLUMNS
from .results.frames import frame_rows

__all__ = ["VIDEO_COLUMNS", "FRAME_COLUMNS", "frame_rows"]
