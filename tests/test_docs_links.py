"""The docs point only at what a clone holds; no test skips for a reason a user can never
satisfy."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "benchmarks" / "README.md", ROOT / "tests" / "golden" / "README.md"]
#: Files of the environment this project was written in, not of the repository.
OUTSIDE = re.compile(r"\.\./shared|\bshared/(tools|golden)|PEERS\.md|SPEC\.md|SPEC §|"
                     r"make_checkpoint\.py")
#: Backticked paths under the repository's own folders, e.g. `tests/checkpoints.py`.
REPO_PATH = re.compile(r"`((?:docs|tests|benchmarks|scripts|src|requirements)/[\w./-]+)`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_name_only_files_the_repository_holds(doc):
    text = doc.read_text()
    assert [m.group(0) for m in OUTSIDE.finditer(text)] == []
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):  # markdown links
        if not re.match(r"[a-z]+:", target) and not (doc.parent / target).exists():
            missing.append(target)
    for path in REPO_PATH.findall(text):
        path = path.rstrip(".")
        generated = path.endswith("node_modules")  # made by npm ci (docs say so)
        if "*" not in path and "<" not in path and not generated and not (ROOT / path).exists():
            missing.append(path)
    assert missing == []


def test_no_test_skips_for_files_outside_the_checkout():
    hits = [f"{p.name}:{i}" for p in sorted((ROOT / "tests").glob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if p.name != Path(__file__).name and ("../shared" in line or "MUSIQ_SHARED" in line)]
    assert hits == []


def test_onnx_doc_installs_onnxruntime_node_offline():
    text = (ROOT / "docs" / "onnx.md").read_text()
    assert "    ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node\n" in text


def test_readme_says_how_long_the_suite_takes():
    text = " ".join((ROOT / "README.md").read_text().split())
    assert re.search(r"CI runs; about \d+ minutes on 2 cores", text)
