"""``musiq report``: an HTML page of a scored folder that opens from disk (no server, no CDN).

:func:`build_report` reads any file ``musiq score --output`` writes (:mod:`.read`), makes
thumbnails in parallel (:mod:`.thumbs`) and writes the page (:mod:`.page`).
"""
from .page import build_report
from .read import ScoreRow, read_scores

__all__ = ["build_report", "read_scores", "ScoreRow"]
