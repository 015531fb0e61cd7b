"""What a source distribution holds: the licence, the package, no partial test suite."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_license_is_the_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 11000
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()


def test_sdist_has_the_licence_and_no_partial_test_suite(tmp_path):
    src = tmp_path / "musiq"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("src", "tests", "requirements", "benchmarks", "docs", "scripts"):
        shutil.copytree(ROOT / folder, src / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "node_modules", "*.egg-info"))
    code = "from setuptools import build_meta as b; print(b.build_sdist('dist'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    name = out.stdout.strip().splitlines()[-1]
    with tarfile.open(src / "dist" / name) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    assert "LICENSE" in names and "src/musiq/__init__.py" in names
    assert "src/musiq/cli/main.py" in names and "requirements/constraints.txt" in names
    assert [n for n in names if n.startswith(("tests/", "benchmarks/"))] == []
