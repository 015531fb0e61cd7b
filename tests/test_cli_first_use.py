"""The command line as a newcomer meets it: light help, one-line errors with 'did you mean',
the models table."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from musiq.cli.main import COMMANDS, build_parser

MUSIQ = [sys.executable, "-m", "musiq.cli.main"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MUSIQ, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_do_not_import_torch(flag):
    code = ("import sys\nfrom musiq.cli.main import main\n"
            f"try:\n    main([{flag!r}])\nexcept SystemExit as e:\n    code = e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'LIGHT', code)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env=os.environ)
    assert r.stdout.strip().splitlines()[-1] == "LIGHT 0", r.stdout + r.stderr
    if flag == "--help":
        for name in COMMANDS:
            assert name in r.stdout


def test_every_commands_help_line_is_the_listed_one():
    parser = build_parser()  # every command module loaded
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert helps == COMMANDS


@pytest.mark.parametrize("args, expected", [
    (["scroe", "x.jpg"], "did you mean 'score'?"),
    (["score", "x.jpg", "--modle", "koniq"], "did you mean '--model'?"),
    (["score", "x.jpg", "--format", "tabel"], "did you mean 'table'?"),
    (["download", "koniqq", "--offline"], "did you mean 'koniq'?"),
    (["score", "x.jpg", "--model", "spaq_singel", "--offline"], "did you mean 'spaq-single'?"),
])
def test_typos_get_one_line_and_a_suggestion(args, expected):
    r = run(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # not argparse's 20-line usage
    assert expected in lines[0] and "Traceback" not in r.stderr


def test_models_table_gives_imagenets_range():
    r = run("models")
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("imagenet "))
    assert row.split()[2] == "0-1"
    rows = {m["name"]: m for m in json.loads(run("models", "--format", "json").stdout)}
    assert rows["imagenet"]["range"] == [0.0, 1.0] and rows["koniq"]["range"] == [0.0, 100.0]
