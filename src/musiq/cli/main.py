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

COMMANDS = ["score", "models", "download", "evaluate", "train", "serve", "export", "tokens"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musiq", description="MUSIQ image quality scores, exact to the original.")
    parser.add_argument("--version", action="version", version=f"musiq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, letting options come between a command's positionals
    (``musiq score a.jpg --model koniq b.jpg``), which plain argparse refuses."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, rest = parser.parse_known_args(argv)
    if rest and getattr(args, "command", None):
        sub = next(a for a in parser._actions
                   if isinstance(a, argparse._SubParsersAction)).choices[args.command]
        try:
            again = sub.parse_intermixed_args(argv[argv.index(args.command) + 1:])
        except TypeError:  # a command whose arguments cannot be intermixed
            return parser.parse_args(argv)
        again.command = args.command
        return again
    return parser.parse_args(argv) if rest else args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
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
