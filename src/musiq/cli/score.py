"""``musiq score``: score image files and folders; table, CSV or JSON on stdout.

JSON contract: an array with one object per input holding ``path``, ``score`` (null on
failure), ``error`` (null on success), plus ``distribution``/``std`` (AVA) or ``top5``
(ImageNet) where they apply. The seed's form ``musiq score --image X --model M`` prints
``MUSIQ score: <value>``. The exit code is 1 when any image failed.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from ..scorer import Prediction
from .common import add_model_options, load_from_args

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp",
                  ".gif"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score images", description=__doc__.split("\n")[0])
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders")
    p.add_argument("--image", "-i", action="append", default=[], metavar="IMAGE",
                   help="an image (repeatable); the original tool's form")
    p.add_argument("--format", "-f", choices=("table", "json", "csv"),
                   help="output format (default: table; 'MUSIQ score: X' for --image)")
    p.add_argument("--batch-size", "-b", type=int, default=8, metavar="N",
                   help="images per forward pass (default 8)")
    add_model_options(p)
    p.set_defaults(func=run)


def expand(paths: Iterable[str]) -> list[str]:
    """Files as given; folders become their image files (by suffix), sorted."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(str(f) for f in Path(p).iterdir()
                          if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out


def _fmt(x: float | None) -> str:
    return "" if x is None else str(np.float32(x))


def write_table(preds: list[Prediction], out) -> None:
    width = max([len(p.source) for p in preds] + [4])
    out.write(f"{'path':<{width}}  {'score':>11}  info\n")
    for p in preds:
        if p.error is not None:
            info = f"ERROR: {p.error}"
        elif p.std is not None:
            info = f"std {p.std:.4f}"
        elif p.top5:
            info = f"top-1 class {p.top5[0]['class']}"
        else:
            info = ""
        score = "-" if p.score is None else f"{p.score:.6f}"
        out.write(f"{p.source:<{width}}  {score:>11}  {info}\n")


def write_csv(preds: list[Prediction], out) -> None:
    dist = any(p.distribution for p in preds)
    top = any(p.top5 for p in preds)
    header = ["path", "score", "error"]
    if dist:
        header += ["std"] + [f"p{i}" for i in range(1, 11)]
    if top:
        header += [f"top{i}_class" for i in range(1, 6)]
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    for p in preds:
        row = [p.source, _fmt(p.score), p.error or ""]
        if dist:
            row += [_fmt(p.std)] + ([_fmt(v) for v in p.distribution] if p.distribution
                                    else [""] * 10)
        if top:
            row += [t["class"] for t in p.top5] if p.top5 else [""] * 5
        w.writerow(row)


def run(args: argparse.Namespace) -> int:
    files = expand(list(args.images) + list(args.image))
    if not files:
        print("musiq score: no images given (musiq score IMAGE... --model NAME|PATH)",
              file=sys.stderr)
        return 2
    scorer = load_from_args(args)
    show = sys.stderr.isatty() and len(files) > 1
    preds = list(tqdm(scorer.predict_many(files, batch_size=args.batch_size), total=len(files),
                      unit="img", disable=not show, file=sys.stderr))
    fmt = args.format or ("seed" if args.image and not args.images else "table")
    out = sys.stdout
    if fmt == "json":
        json.dump([p.to_dict() for p in preds], out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        write_csv(preds, out)
    elif fmt == "seed":
        for p in preds:
            prefix = f"{p.source}: " if len(preds) > 1 else ""
            if p.error is None:
                out.write(f"{prefix}MUSIQ score: {_fmt(p.score)}\n")
            else:
                out.write(f"{prefix}MUSIQ error: {p.error}\n")
    else:
        write_table(preds, out)
    failed = [p for p in preds if p.error is not None]
    if failed:
        print(f"musiq score: {len(failed)} of {len(preds)} image(s) failed", file=sys.stderr)
        for p in failed:
            print(f"  {p.source}: {p.error}", file=sys.stderr)
    return 1 if failed else 0
