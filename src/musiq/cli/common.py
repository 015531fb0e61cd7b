"""Options and helpers shared by subcommands that load a model."""
from __future__ import annotations

import argparse

from ..decoding.decode import DEFAULT_MAX_PIXELS
from ..engine.plan import ScorerOptions
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..scorer import Scorer


def add_model_options(p: argparse.ArgumentParser, *, several: bool = False,
                      max_pixels: int = DEFAULT_MAX_PIXELS, image_tokens: bool = True,
                      listed: bool = False) -> None:
    """The options that choose and place a model. ``several``: ``--model`` may be repeated
    (a server keeps several in memory); ``listed``: ``--model`` takes comma-separated
    lists, may be repeated and ``all`` (every official quality and aesthetic model; read
    them with :func:`model_specs`); ``max_pixels``: the default pixel limit;
    ``image_tokens``: add ``--max-tokens`` (the per-image token bound)."""
    g = p.add_argument_group("model")
    names = ("registry name (koniq, spaq, paq2piq, ava, imagenet, *-single; pyiqa's "
             "musiq-koniq, musiq-spaq, musiq-paq2piq, musiq-ava too) or a .npz path")
    if listed:
        g.add_argument("--model", "-m", action="append", metavar="NAME|PATH[,NAME|PATH...]",
                       help=names + "; several score together, each image decoded once: "
                                    "comma-separated or repeated, 'all' = koniq, spaq, "
                                    "paq2piq, ava (default: koniq; docs/several-models.md)")
    elif several:
        g.add_argument("--model", "-m", action="append", metavar="NAME|PATH",
                       help=names + "; repeat to serve several (default: koniq; the first "
                                    "is the default model)")
    else:
        g.add_argument("--model", "-m", default="koniq", metavar="NAME|PATH",
                       help=names + " (default: koniq)")
    g.add_argument("--checkpoint-dir", metavar="DIR",
                   help="directory holding the official checkpoints (also $MUSIQ_CHECKPOINT_DIR;"
                        " ./musiq_original/checkpoints, the one beside the installation and the "
                        "user cache are searched too)")
    g.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N or auto (default: CUDA when available, else cpu)")
    g.add_argument("--max-pixels", type=int, default=max_pixels, metavar="N",
                   help=f"refuse images above N pixels, checked from the header "
                        f"(default {max_pixels:,}; 0 = no limit)")
    if image_tokens:
        g.add_argument("--max-tokens", type=int, default=None, metavar="N",
                       help="refuse images that would make more than N tokens, before the "
                            "model runs (its cost grows with the square of the tokens; "
                            "default: max-pixels / 3072, 16,277 at 50 MP; 0 = no limit)")
    g.add_argument("--exif-transpose", action="store_true",
                   help="apply EXIF orientation (off by default, as in the original)")
    g.add_argument("--offline", action="store_true", default=None,
                   help="never download a missing checkpoint (also $MUSIQ_OFFLINE=1)")


def options_from_args(args: argparse.Namespace) -> ScorerOptions:
    """The :class:`ScorerOptions` the command line describes (checked when made): every
    option a subcommand has, and the defaults for those it has not."""
    def get(name: str, default=None):
        return getattr(args, name, default)

    runtime = {"backend": get("backend")} if get("backend") else {}  # else the default
    return ScorerOptions(
        device=args.device, max_pixels=args.max_pixels or None,
        exif_transpose=args.exif_transpose, max_batch_tokens=get("max_batch_tokens"),
        precision=get("precision", "fp32"), compile=get("compile", False),
        threads=get("threads"), preprocess=get("preprocess", "auto"), workers=get("workers"),
        max_tokens=get("max_tokens"), **runtime)


def model_specs(args: argparse.Namespace) -> list[str]:
    """The models ``--model`` names (commas and repeats split, ``all`` expanded; default
    ``koniq``), their names checked when there are several (the same name twice, or an
    output column's: :class:`MusiqError`) before anything is read."""
    from ..multi_scorer import spec_name
    from ..network.registry import split_models
    from ..results.columns import check_model_names
    value = args.model or ["koniq"]
    specs = split_models([value] if isinstance(value, str) else value)
    if len(specs) > 1:
        check_model_names([spec_name(s) for s in specs])
    return specs


def load_several_from_args(args: argparse.Namespace, specs: list[str]):
    """A :class:`~musiq.multi_scorer.MultiScorer` of ``specs`` with the options given."""
    from ..multi_scorer import load_several
    return load_several(specs, checkpoint_dir=args.checkpoint_dir, offline=args.offline,
                        options=options_from_args(args))


def load_from_args(args: argparse.Namespace, model: str | None = None) -> "Scorer":
    """The scorer the options describe (``model``: this one instead of ``--model``); every
    option is checked before the checkpoint loads."""
    from ..scorer import load
    return load(model or args.model, checkpoint_dir=args.checkpoint_dir,
                offline=args.offline, options=options_from_args(args))
