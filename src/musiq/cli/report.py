"""``musiq report SCORES --output report.html``: an HTML page of a scored folder.

SCORES is any file ``musiq score --output`` writes (CSV, JSON lines; Parquet with pyarrow)
or a saved ``--format json`` array. The page opens from disk, with no server or network:
thumbnails best first (paged, 100 a page), a histogram over the model's score range,
count/mean/quantiles, the failures with their reasons, sorting and filters by score or name;
AVA shows each image's distribution. Thumbnails go to ``OUTPUT-stem_thumbs/`` beside the
page, or into the page with ``--embed``. A several-model file shows every model's score on
each card, ranks and filters by the model picked, and draws a scatter of two models' scores.
"""
from __future__ import annotations

import argparse
import sys

from .evaluate import check_writable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="HTML report of a scores file",
                       description=__doc__.split("\n")[0])
    p.add_argument("scores", metavar="SCORES", help="a .csv/.jsonl/.json/.parquet scores file")
    p.add_argument("--output", "-o", required=True, metavar="REPORT.html")
    p.add_argument("--embed", action="store_true",
                   help="embed the thumbnails in the page (one self-contained file)")
    p.add_argument("--thumb-size", type=int, default=192, metavar="PX",
                   help="thumbnail longer side in pixels (default 192)")
    p.add_argument("--workers", "-j", type=int, default=None, metavar="N",
                   help="threads making thumbnails (default: 2 per core, at most 16)")
    p.add_argument("--title", help="page title (default: from the scores file name)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import build_report

    check_writable("--output", args.output)  # a missing folder is named, never created
    path = build_report(args.scores, args.output, embed=args.embed, thumb_size=args.thumb_size,
                        workers=args.workers, progress=sys.stderr.isatty() and not args.quiet,
                        title=args.title)
    if not args.quiet:
        print(f"musiq report: wrote {path}", file=sys.stderr)
    return 0
