"""Setup installs what every README command needs; the torch build is chosen on purpose;
every 'needs the X extra' message gives a command that works as printed.

setup.sh itself is what ``bash test.sh`` (CI) runs first; these tests check its choices
without installing anything."""
from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fileserver import FileServer
from musiq.extras import install_hint, needs, requirements

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import torch_build  # noqa: E402

EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
    "optional-dependencies"]


def test_setup_installs_every_extra():
    text = (ROOT / "scripts" / "setup.sh").read_text()
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "setup.sh")], check=True)
    default = re.search(r'^extras="([^"]+)"', text, re.M).group(1).split(",")
    assert sorted(default) == sorted(set(EXTRAS) - {"dev"})
    assert "scripts/torch_build.py" in text
    assert 'exec "$root/.venv/bin/musiq"' in (ROOT / "musiq.sh").read_text()


def test_no_message_or_doc_sends_users_to_the_package_index():
    """musiq is not on the package index: ``pip install 'musiq[x]'`` cannot work."""
    pattern = re.compile(r"pip install\s+['\"]?musiq\[")
    files = [*(ROOT / "src").rglob("*.py"), ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in files
           for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert bad == []


@pytest.mark.parametrize("extra", sorted(set(EXTRAS) - {"dev"}))
def test_install_hint_is_a_command_that_works(extra):
    hint = install_hint(extra)
    words = shlex.split(hint)
    assert words[:4] == [sys.executable, "-m", "pip", "install"]
    assert words[4:6] == ["-c", str(ROOT / "requirements" / "constraints.txt")]
    assert words[6:] == EXTRAS[extra] == requirements(extra)
    assert needs("X", extra).endswith(hint)
    # As printed (here everything is installed already: pip resolves it without changes).
    done = subprocess.run([*words[:4], "--dry-run", "--no-deps", *words[4:]],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Would install" not in done.stdout


def test_missing_extra_message(monkeypatch):
    import musiq.results.tables as tables
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    with pytest.raises(Exception) as e:
        tables.require_pyarrow()
    assert str(e.value) == f"Parquet output needs the 'parquet' extra; install it with: " \
                           f"{install_hint('parquet')}"


# -- the torch build ---------------------------------------------------------------------------
def fake_nvidia_smi(folder: Path, listing: str) -> Path:
    exe = folder / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\necho '{listing}'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return folder


def test_plans_cpu_index_then_registry_cpu_then_default():
    first, second, third = torch_build.plans("2.13.0", False, "http://idx/cpu")
    assert (first.requirement, first.pip_args) == ("torch==2.13.0+cpu",
                                                   ["--extra-index-url", "http://idx/cpu"])
    assert (second.requirement, second.pip_args) == ("torch==2.13.0+cpu", [])
    assert third.requirement == "torch==2.13.0" and "CUDA build" in third.warning
    assert [p.requirement for p in torch_build.plans("2.13.0", False, None)] == [
        "torch==2.13.0+cpu", "torch==2.13.0"]
    (gpu,) = torch_build.plans("2.13.0", True, "http://idx/cpu")
    assert (gpu.build, gpu.requirement, gpu.pip_args) == ("cuda", "torch==2.13.0", [])
    assert torch_build.pinned_version() == re.search(
        r"^torch==(\S+)", (ROOT / "requirements" / "constraints.txt").read_text(), re.M)[1]


def _dry_run(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "torch_build.py"),
                          "--dry-run"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_detection_gpu_and_index(tmp_path):
    path = os.environ.get("PATH", "")
    with FileServer() as server:
        server.behaviour.files["/cpu/torch/"] = b"<html>torch</html>"
        index = server.url + "cpu"
        no_gpu = _dry_run({"PATH": f"{tmp_path}:{path}", "MUSIQ_TORCH_CPU_INDEX": index})
        assert no_gpu.splitlines()[0] == f"cpu: torch=={torch_build.pinned_version()}+cpu " \
                                         f"from PyTorch's CPU index ({index}) " \
                                         f"--extra-index-url {index}"
        assert "would install the CPU build (no NVIDIA GPU was found)" in no_gpu
    gpu_dir = fake_nvidia_smi(tmp_path, "GPU 0: NVIDIA H200 (UUID: GPU-1)")
    gpu = _dry_run({"PATH": f"{gpu_dir}:{path}", "MUSIQ_TORCH_CPU_INDEX": index})
    assert "would install the CUDA build (an NVIDIA GPU was found)" in gpu
    forced = _dry_run({"PATH": f"{gpu_dir}:{path}", "MUSIQ_TORCH": "cpu",
                       "MUSIQ_TORCH_CPU_INDEX": "http://127.0.0.1:9/"})  # unreachable
    assert forced.splitlines()[0].startswith("cpu: torch==") and "CPU index" not in forced
