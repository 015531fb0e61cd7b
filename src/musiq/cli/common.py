"""Options and helpers shared by subcommands that load a model."""
from __future__ import annotations

import argparse

from ..decode import DEFAULT_MAX_PIXELS
from ..scorer import Scorer, load


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", "-m", default="koniq", metavar="NAME|PATH",
                   help="registry name (koniq, spaq, paq2piq, ava, imagenet, *-single; "
                        "pyiqa's musiq-koniq, musiq-spaq, musiq-paq2piq, musiq-ava too) or a "
                        ".npz path (default: koniq)")
    g.add_argument("--checkpoint-dir", metavar="DIR",
                   help="directory holding the official checkpoints (also $MUSIQ_CHECKPOINT_DIR;"
                        " ./musiq_original/checkpoints, the one beside the installation and the user "
                        "cache are searched too)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: CUDA when available, else cpu)")
    g.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse images above N pixels, checked from the header "
                        f"(default {DEFAULT_MAX_PIXELS:,}; 0 = no limit)")
    g.add_argument("--exif-transpose", action="store_true",
                   help="apply EXIF orientation (off by default, as in the original)")
    g.add_argument("--offline", action="store_true", default=None,
                   help="never download a missing checkpoint (also $MUSIQ_OFFLINE=1)")


def load_from_args(args: argparse.Namespace) -> Scorer:
    """The scorer the options describe; every option is checked before the checkpoint loads
    (``--precision``/``--compile`` where the subcommand has them)."""
    return load(args.model, checkpoint_dir=args.checkpoint_dir, device=args.device,
                max_pixels=args.max_pixels or None, exif_transpose=args.exif_transpose,
                offline=args.offline, precision=getattr(args, "precision", "fp32"),
                compile=getattr(args, "compile", False),
                backend=getattr(args, "backend", "torch"), threads=getattr(args, "threads", None),
                preprocess=getattr(args, "preprocess", "auto"))
