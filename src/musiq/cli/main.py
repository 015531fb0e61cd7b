"""Entry point: ``musiq <command> ...``.

Subcommands are modules of this package listed in ``COMMANDS``; each has
``register(subparsers)`` that adds its parser and sets ``func(args) -> exit code``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .._version import __version__
from ..errors import MusiqError

COMMANDS = ["score", "models", "download", "evaluate", "train", "serve", "report", "explain",
            "export", "tokens"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musiq", description="MUSIQ image quality scores, exact to the original.")
    parser.add_argument("--version", action="version", version=f"musiq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    for p in sub.choices.values():  # descriptions come from docstrings: no RST markup
        p.description = plain(p.description)
        for action in p._actions:
            action.help = plain(action.help)
    return parser


def plain(text: str | None) -> str | None:
    """Text without reStructuredText literal quotes (``x`` -> x), for --help."""
    return None if text is None else text.replace("``", "")


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
    # File names that are not UTF-8 reach us as surrogates: print their bytes as they are.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")
    parser = build_parser()
    args = parse(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader went away (``musiq score ... | head``): not an error of ours. Point
        # stdout at /dev/null so that the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE
    except MusiqError as e:
        print(f"musiq: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file we write or read failed in a way not checked before
        name = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"musiq: error: {name}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("musiq: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
