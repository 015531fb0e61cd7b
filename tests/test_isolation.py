"""The suite stands alone and never sees a user's checkpoints."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import musiq
from conftest import GOLDEN, ROOT
from musiq.errors import CheckpointNotFound
from musiq.network.locate import cache_dir, search_dirs


def test_golden_data_is_in_the_repository():
    assert GOLDEN.is_relative_to(ROOT / "tests")
    assert len(list((GOLDEN / "images").glob("*.*"))) == 21
    total = sum(f.stat().st_size for f in GOLDEN.rglob("*") if f.is_file())
    assert total < 10 * 2 ** 20


def test_search_never_reaches_the_users_folders():
    dirs = [str(d) for d in search_dirs()]
    home = str(Path.home())
    assert not any(d.startswith(home) for d in dirs), dirs
    assert Path("musiq_original/checkpoints") not in [Path(d) for d in dirs]
    assert "MUSIQ_CHECKPOINT_DIR" not in os.environ
    assert not str(cache_dir()).startswith(home)


@pytest.fixture
def users_checkpoint(ckpt_1class):
    """A koniq checkpoint where the README tells users to put it: ./musiq_original/checkpoints
    of the repository (the tests' working directory) and the real user cache."""
    made = []
    for d in (ROOT / "musiq_original" / "checkpoints",
              Path.home() / ".cache" / "musiq" / "checkpoints"):
        target = d / "koniq_ckpt.npz"
        if not target.exists():
            d.mkdir(parents=True, exist_ok=True)
            target.write_bytes(ckpt_1class.read_bytes())
            made.append(target)
    yield
    for target in made:
        target.unlink()
        for parent in (target.parent, target.parent.parent):
            try:
                parent.rmdir()
            except OSError:
                pass


def test_a_users_checkpoints_change_nothing(users_checkpoint, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(CheckpointNotFound):
        musiq.load("koniq", offline=True)
    p = subprocess.run([sys.executable, "-m", "musiq.cli.main", "score", "--model", "koniq",
                        "--offline", str(GOLDEN / "images" / "coffee_30x20_q90.jpg")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2 and "not found" in p.stderr, p.stderr
