"""Label-file options shared by ``musiq evaluate`` and ``musiq train``."""
from __future__ import annotations

import argparse
from dataclasses import replace

from ..evaluation.labels import PRESETS, LabelColumns, parse_column, parse_columns, preset


def add_label_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("label file columns")
    g.add_argument("--label-format", choices=tuple(PRESETS), default="default",
                   help="preset: default (header image,mos), koniq (image_name, MOS_zscore), "
                        "spaq (Image name, MOS), ava (AVA.txt: id + 10 vote counts)")
    g.add_argument("--image-column", type=parse_column, metavar="NAME|INDEX",
                   help="column holding the image file name")
    g.add_argument("--mos-column", type=parse_column, metavar="NAME|INDEX",
                   help="column holding the MOS")
    g.add_argument("--dist-columns", type=parse_columns, metavar="A,B,..|START:END",
                   help="columns holding vote counts (or probabilities) for scores 1..K; "
                        "their mean is the label unless --mos-column is given too")
    g.add_argument("--no-header", action="store_true",
                   help="the file has no header row (give columns as 0-based indices)")
    g.add_argument("--delimiter", metavar="CHAR",
                   help="field separator (default: detected; 'space' for whitespace)")
    g.add_argument("--image-suffix", metavar="SUFFIX", help="appended to every image name")


def columns_from_args(args: argparse.Namespace) -> LabelColumns:
    delim = args.delimiter
    if delim in ("space", "whitespace"):
        delim = " "
    elif delim in ("tab", "\\t"):
        delim = "\t"
    cols = preset(args.label_format, image=args.image_column, mos=args.mos_column,
                  distribution=args.dist_columns, delimiter=delim,
                  image_suffix=args.image_suffix)
    if args.dist_columns and args.mos_column is None:
        cols = replace(cols, mos=None)
    if args.no_header:
        cols = replace(cols, header=False)
    return cols
