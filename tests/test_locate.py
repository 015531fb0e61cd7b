"""Where named checkpoints are looked for: the documented order, beside the installation too."""
from __future__ import annotations

from pathlib import Path

import pytest

import musiq.network.locate as locate
from musiq.errors import CheckpointNotFound
from musiq.network.registry import get_info

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """Run from a folder that is not the checkout, with nothing in any search folder."""
    for var in ("MUSIQ_CHECKPOINT_DIR", "MUSIQ_LOCAL_DIR", "MUSIQ_INSTALLED_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return tmp_path


def test_install_root_is_this_checkout():
    assert locate.install_root() == ROOT  # the suite runs from the source tree


def test_checkpoints_beside_the_installation_are_found(elsewhere, monkeypatch):
    root = elsewhere / "clone"
    (root / "src" / "musiq").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'musiq'\n")
    monkeypatch.setattr(locate, "install_root", lambda: root)
    beside = root / "musiq_original" / "checkpoints"
    info = get_info("koniq")
    with pytest.raises(CheckpointNotFound) as e:
        locate.find_checkpoint(info)
    assert str(beside / "koniq_ckpt.npz") in str(e.value)  # named in "Looked in"
    beside.mkdir(parents=True)
    (beside / "koniq_ckpt.npz").write_bytes(b"x")
    assert locate.find_checkpoint(info) == beside / "koniq_ckpt.npz"
    # The documented order: the working directory's folder comes first.
    local = Path("musiq_original/checkpoints")
    local.mkdir(parents=True)
    (local / "koniq_ckpt.npz").write_bytes(b"y")
    assert locate.find_checkpoint(info) == local / "koniq_ckpt.npz"
    dirs = locate.search_dirs("given")
    assert dirs == [Path("given"), local, beside, locate.cache_dir()]


def test_single_scale_message_names_only_documented_places(elsewhere):
    with pytest.raises(CheckpointNotFound) as e:
        locate.find_checkpoint(get_info("spaq-single"))
    msg = str(e.value)
    assert "spaq_single_spaq_ckpt.npz" not in msg
    assert "musiq_original/checkpoints/full_size_single_scale/spaq_ckpt.npz" in msg
    # The flat name stays accepted, and is documented.
    assert "koniq_single_koniq_ckpt.npz" in (ROOT / "docs" / "checkpoints.md").read_text()


def test_readme_documents_the_search_order():
    text = " ".join((ROOT / "README.md").read_text().split())
    assert ("`--checkpoint-dir`, `$MUSIQ_CHECKPOINT_DIR`, `./musiq_original/checkpoints/`, "
            "`musiq_original/checkpoints/` beside the installation") in text
