"""Optional dependencies ("extras") and the command that installs one, for error messages.

``bash musiq.sh`` / ``scripts/setup.sh`` install every extra. Where one is missing anyway (an
environment set up by hand, an installed wheel), :func:`install_hint` gives a command that
works as printed: this interpreter's pip, the extra's own requirements, and from a checkout
the pinned versions of ``requirements/constraints.txt``. (Installing ``musiq[onnx]`` from
the package index would not: musiq is not on it.)
"""
from __future__ import annotations

import re
import shlex
import sys
from importlib import metadata

from pathlib import Path



def install_root() -> Path | None:
    """The checkout this package runs from (an editable install, ``bash musiq.sh``): the
    folder above ``src/musiq`` holding ``pyproject.toml``; None for an installed wheel."""
    here = Path(__file__).resolve()
    for parent in list(here.parents)[:4]:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "musiq").is_dir():
            return parent
    return None


def requirements(extra: str) -> list[str]:
    """The requirements of one extra (e.g. ``["onnx>=1.15", "onnxruntime>=1.17"]``), from
    the checkout's ``pyproject.toml`` or else the installed package's metadata."""
    root = install_root()
    if root is not None:
        import tomllib
        with open(root / "pyproject.toml", "rb") as f:
            extras = tomllib.load(f)["project"].get("optional-dependencies", {})
        return list(extras.get(extra, []))
    out = []
    for req in metadata.requires("musiq") or []:
        spec, _, marker = req.partition(";")
        if re.search(r"""extra\s*==\s*["']""" + re.escape(extra) + r"""["']""", marker):
            out.append(spec.strip())
    return out


def install_hint(extra: str) -> str:
    """A shell command that installs ``extra`` into the running environment."""
    parts = [sys.executable, "-m", "pip", "install"]
    root = install_root()
    if root is not None and (root / "requirements" / "constraints.txt").is_file():
        parts += ["-c", str(root / "requirements" / "constraints.txt")]
    reqs = requirements(extra) or [f"musiq[{extra}]"]
    return " ".join(shlex.quote(p) for p in parts + reqs)


def needs(what: str, extra: str) -> str:
    """``"<what> needs the 'onnx' extra; install it with: <command>"``."""
    return f"{what} needs the '{extra}' extra; install it with: {install_hint(extra)}"
