"""Entry point: ``musiq <command> ...``.

Subcommands are modules of this package listed in ``COMMANDS``; each has
``register(subparsers)`` that adds its parser and sets ``func(args) -> exit code``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from .._version import __version__
from ..errors import MusiqError
from ..suggest import did_you_mean

#: Each command and its one-line help: ``musiq --help`` lists them without importing any
#: command module (they import torch: seconds). A command's module is imported only when it
#: runs or its own ``--help`` is asked for.
COMMANDS: dict[str, str] = {
    "score": "score images",
    "models": "list the official models and where their files are",
    "download": "download official checkpoints",
    "evaluate": "compare a model's scores with labels (SRCC, PLCC ...)",
    "train": "fine-tune on labelled images",
    "serve": "serve models over HTTP with a web page",
    "report": "HTML report of a scores file",
    "explain": "heat map of what drives an image's score",
    "export": "export a model to ONNX",
    "tokens": "write an image's tokens (the ONNX model's input)",
}


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line with a 'did you mean' where a name was
    mistyped, instead of argparse's full usage (20 lines for ``score``)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = _with_suggestion(message, self)
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every option of a parser and of its loaded subcommands."""
    out: list[str] = []
    for action in parser._actions:
        out += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += [o for a in sub._actions for o in a.option_strings]
    return out


def _with_suggestion(message: str, parser: argparse.ArgumentParser) -> str:
    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        return message + did_you_mean(choice.group(1), re.findall(r"'([^']*)'",
                                                                  choice.group(2)))
    unknown = re.match(r"unrecognized arguments: (\S+)", message)
    if unknown and unknown.group(1).startswith("-"):
        flag = unknown.group(1).split("=", 1)[0]
        return message + did_you_mean(flag, [o for o in _option_strings(parser)
                                              if o.startswith("--")])
    return message


def build_parser(commands: "set[str] | None" = None) -> argparse.ArgumentParser:
    """The parser; ``commands``: the command modules to load (default: all). The others are
    listed with their one-line help only."""
    parser = Parser(prog="musiq",
                    description="MUSIQ image quality scores, exact to the original.",
                    epilog="'musiq COMMAND --help' describes a command's options.")
    parser.add_argument("--version", action="version", version=f"musiq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in COMMANDS.items():
        if commands is None or name in commands:
            importlib.import_module(f"{__package__}.{name}").register(sub)
        else:
            sub.add_parser(name, help=text, add_help=False)
    for name in commands if commands is not None else COMMANDS:
        p = sub.choices[name]  # descriptions come from docstrings: no RST markup
        p.description = plain(p.description)
        for action in p._actions:
            action.help = plain(action.help)
    return parser


def command_of(argv: list[str]) -> str | None:
    """The command named on a command line (the first argument that is not an option: the
    top-level parser has only ``--help`` and ``--version``), or None."""
    return next((a for a in argv if not a.startswith("-")), None)


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
    argv = sys.argv[1:] if argv is None else list(argv)
    command = command_of(argv)
    parser = build_parser({command} if command in COMMANDS else set())
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
