"""``musiq tokens IMAGE -o x.npy``: the original's token array of one image.

Writes float32 ``(T, 3075)``: 3072 patch values, hashed position, scale id, mask (1 valid,
0 padding), the input of an exported ONNX model (add a batch axis); docs/onnx.md.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ..decoding.decode import DEFAULT_MAX_PIXELS
from ..errors import ImageError, MusiqError
from ..network.architecture import OFFICIAL, Architecture
from ..tokens.preprocessor import Preprocessor


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokens", help="write an image's tokens (the ONNX model's input)",
                       description=__doc__.split("\n")[0])
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--output", "-o", required=True, metavar="FILE.npy")
    p.add_argument("--single-scale", action="store_true",
                   help="native scale only, for the *-single models (default: 224, 384, "
                        "native)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse images above N pixels (default {DEFAULT_MAX_PIXELS:,}; "
                        "0 = no limit)")
    p.add_argument("--exif-transpose", action="store_true",
                   help="apply EXIF orientation (off by default, as in the original)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    arch = Architecture(num_scales=1 if args.single_scale else OFFICIAL.num_scales)
    pp = Preprocessor(arch.preprocess, max_pixels=args.max_pixels or None,
                      exif_transpose=args.exif_transpose)
    try:
        tokens = pp.tokens(args.image).to_original_layout()
    except ImageError as e:
        print(f"musiq tokens: {e}", file=sys.stderr)
        return 1
    try:
        np.save(args.output, tokens)
    except OSError as e:
        raise MusiqError(f"{args.output}: cannot write: {e.strerror or e}") from None
    valid = int(tokens[:, -1].sum())
    print(f"wrote {args.output}: {tokens.shape[0]} tokens ({valid} valid) x {tokens.shape[1]}")
    return 0
