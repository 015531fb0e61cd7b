"""Shared fixtures: the golden data in tests/golden and checkpoints with its weights.

The suite stands alone: everything it needs is in the repository. It never sees a user's
checkpoints either: the checkpoint search (``$MUSIQ_CHECKPOINT_DIR``,
``./musiq_original/checkpoints``, the one beside the checkout, the user cache) is pointed at
empty temporary folders for the whole session, subprocesses included (they inherit the
environment).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from checkpoints import main as _make_checkpoint

# Tests never reach a real host: a named model that is missing must not start a download.
# Download tests opt in explicitly against a local server (tests/fileserver.py).
os.environ["MUSIQ_OFFLINE"] = "1"
# Tests that are not about runtimes run the torch network: loading a converted runtime costs
# seconds per model load, and the suite loads hundreds. The default runtime (auto: OpenVINO
# on CPU) is tested where runtimes are the subject: test_backend.py, test_conformance.py.
os.environ["MUSIQ_BACKEND"] = "torch"

_ISOLATED = Path(tempfile.mkdtemp(prefix="musiq-tests-"))
os.environ.pop("MUSIQ_CHECKPOINT_DIR", None)
os.environ["MUSIQ_LOCAL_DIR"] = str(_ISOLATED / "local")
os.environ["MUSIQ_INSTALLED_DIR"] = str(_ISOLATED / "installed")
os.environ["XDG_CACHE_HOME"] = str(_ISOLATED / "cache")

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"


def pytest_sessionfinish(session, exitstatus) -> None:
    shutil.rmtree(_ISOLATED, ignore_errors=True)


def golden_records() -> list[dict]:
    return json.loads((GOLDEN / "scores.json").read_text())["images"]


@pytest.fixture(scope="session")
def golden() -> dict[str, dict]:
    """Golden records by file name."""
    if not GOLDEN.is_dir():
        pytest.fail(f"golden data not found at {GOLDEN}")
    return {r["file"]: r for r in golden_records()}


def write_checkpoint(path: Path, *args: str) -> Path:
    """Write a structure-exact checkpoint with the golden weights (see tests/checkpoints.py;
    ``args`` as its command line: ``--classes N``, ``--single-scale``, ``--seed N``,
    ``--optimizer-state``)."""
    _make_checkpoint([str(path), *args])
    return path


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def ckpt_1class(checkpoint_dir) -> Path:
    return write_checkpoint(checkpoint_dir / "ckpt_1class.npz", "--classes", "1")


@pytest.fixture(scope="session")
def ckpt_10class(checkpoint_dir) -> Path:
    return write_checkpoint(checkpoint_dir / "ckpt_10class.npz", "--classes", "10")


@pytest.fixture(scope="session")
def scorer_1class(ckpt_1class):
    import musiq
    return musiq.load(ckpt_1class, device="cpu")


@pytest.fixture(scope="session")
def scorer_10class(ckpt_10class):
    import musiq
    return musiq.load(ckpt_10class, device="cpu")


@pytest.fixture(scope="session")
def ckpt_1class_single(checkpoint_dir) -> Path:
    return write_checkpoint(checkpoint_dir / "ckpt_1class_single.npz", "--classes", "1",
                            "--single-scale")


@pytest.fixture(scope="session")
def ckpt_10class_single(checkpoint_dir) -> Path:
    return write_checkpoint(checkpoint_dir / "ckpt_10class_single.npz", "--classes", "10",
                            "--single-scale")


@pytest.fixture(scope="session")
def ckpt_1000class(checkpoint_dir) -> Path:
    return write_checkpoint(checkpoint_dir / "ckpt_1000class.npz", "--classes", "1000")


@pytest.fixture(scope="session")
def small_set(tmp_path_factory) -> Path:
    """A tiny labelled set of 96 px JPEGs (2 photos x 5 quality levels) in one folder."""
    from synthetic import PHOTOS, make_set
    root = tmp_path_factory.mktemp("small_set")
    make_set(root, list(PHOTOS[:2]), size=96, label_file="labels.csv")
    return root
