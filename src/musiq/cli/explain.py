"""``musiq explain IMAGE --model M --output heat.png [--format json]``: which regions move the score.

Occlusion (default) replaces cells of native 32-px patches by the image's mean colour and
scores the occluded image again (one forward pass per cell); ``--method rollout`` adds the
attention rollout from the CLS token. The PNG overlays each map on the image with a colour
bar (a progress bar over the occlusion passes on a terminal); ``--format json`` prints the grids (row-major, ``score(original) - score(occluded)``
for occlusion, in the model's score units) with the provenance.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import ImageError, MusiqError
from .common import add_model_options, load_from_args
from .evaluate import check_writable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="heat map of what drives an image's score",
                       description=__doc__.split("\n")[0])
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--output", "-o", metavar="HEAT.png", help="write the heat map PNG here")
    p.add_argument("--format", "-f", choices=("text", "json"), default="text",
                   help="standard output: a summary (default) or the grids as JSON")
    p.add_argument("--method", action="append", choices=("occlusion", "rollout"),
                   help="occlusion (default) and/or rollout; repeat for both")
    p.add_argument("--cell", type=int, default=None, metavar="N",
                   help="occlusion/rollout cell side in native 32-px patches (default: at "
                        "most 16 cells along the longer side)")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..explain import draw, explain

    if not args.output and args.format != "json":
        raise MusiqError("musiq explain: give --output HEAT.png and/or --format json")
    check_writable("--output", args.output)  # before the passes, not after them
    scorer = load_from_args(args)
    methods = tuple(dict.fromkeys(args.method or ["occlusion"]))
    try:
        ex = explain(scorer, args.image, methods=methods, cell=args.cell,
                     progress=sys.stderr.isatty())
    except ImageError as e:
        print(f"musiq explain: {e}", file=sys.stderr)
        return 1
    if args.output:
        name = os.path.basename(args.image)
        draw(ex, args.output, title=f"{name}: {scorer.name} score {ex.score:.4g}")
    if args.format == "json":
        d = ex.to_dict(scorer.provenance())
        d["model"] = scorer.name
        d["score_range"] = list(scorer.score_range) if scorer.score_range else None
        print(json.dumps(d))
    else:
        rows, cols = ex.shape()
        print(f"{args.image}: score {ex.score:.6g} ({scorer.name}); {rows}x{cols} cells of "
              f"{ex.cell_px} px" + (f"; heat map {args.output}" if args.output else ""))
    return 0
