"""Entry point: ``musiq <command> ...``.

Subcommands are modules of this package listed in ``COMMANDS``; each has
``register(subparsers)`` that adds its parser and sets ``func(args) -> exit code``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import MusiqError

COMMANDS = ["score", "models", "download", "evaluate", "train", "serve"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musiq", description="MUSIQ image quality scores, exact to the original.")
    parser.add_argument("--version", action="version", version=f"musiq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MusiqError as e:
        print(f"musiq: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("musiq: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
