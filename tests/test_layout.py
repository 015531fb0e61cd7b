"""The layout shows the flow: no module of src/musiq imports from a later stage than its own
(docs/layout.md), and none is over the size limits the project keeps."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

SRC = ROOT / "src" / "musiq"
#: Stages in the order data flows; a module may import its own stage and earlier ones.
STAGES = {
    "errors": 0, "failures": 0, "atomic": 0, "_version": 0, "_aliases": 0, "suggest": 0, "extras": 0,
    "decoding": 1, "tokens": 2, "network": 3, "engine": 4, "results": 5, "scorer": 6,
    "cli": 7, "serve": 7, "report": 7, "distributed": 7, "explain": 7, "evaluation": 7,
    "training": 7, "distributed_inputs": 7, "distributed_multi": 7, "video_scoring": 6, "multi_scorer": 6, "__main__": 8, "": 8,
}
MODULES = sorted(p for p in SRC.rglob("*.py"))


def _module(path: Path) -> list[str]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _stage(parts: list[str]) -> int:
    head = parts[0] if parts else ""
    assert head in STAGES, f"musiq.{head} has no stage: add it to STAGES and docs/layout.md"
    return STAGES[head]


def _imports(path: Path) -> list[tuple[int, list[str]]]:
    """``(line, target module parts below musiq)`` of every musiq import in ``path``."""
    own = _module(path)
    package = own if path.name == "__init__.py" else own[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "musiq":
                target = node.module.split(".")[1:]
            else:
                continue
            if node.module is None:  # from . import a, b: the names are the targets
                out += [(node.lineno, target + [a.name]) for a in node.names]
            else:
                out.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[1:]) for a in node.names
                    if a.name.split(".")[0] == "musiq"]
    return out


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_imports_a_later_stage(path):
    own = _stage(_module(path))
    for line, target in _imports(path):
        if target and target[0] == "_version":
            continue
        assert _stage(target) <= own, (f"{path.relative_to(SRC)}:{line} imports "
                                       f"musiq.{'.'.join(target)}, a later stage")


def test_modules_and_functions_stay_small():
    """No module over ~350 lines, no function over ~60 (the project's habit: small modules
    with one job each)."""
    over = []
    for path in MODULES:
        text = path.read_text()
        if text.count("\n") > 360:
            over.append(f"{path.relative_to(SRC)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 65:
                    over.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}: {n}")
    assert not over, "\n".join(over)


def test_old_module_paths_are_the_same_modules():
    import importlib

    import musiq
    from musiq._aliases import MOVED
    for old, new in MOVED.items():
        if (SRC / f"{old}.py").exists():
            continue  # not moved (yet)
        if not (SRC / (new.replace(".", "/") + ".py")).exists():
            continue
        assert importlib.import_module(f"musiq.{old}") is importlib.import_module(
            f"musiq.{new}"), old
    assert musiq.Architecture is importlib.import_module("musiq.network.architecture").Architecture


def test_python_dash_m_musiq_is_the_command():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "musiq", "--version"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("musiq "), r.stderr
