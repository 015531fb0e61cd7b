"""Install the torch build this machine should have; called by scripts/setup.sh.

Usage: python scripts/torch_build.py [--dry-run]   (the venv's python; standard library only)

* No NVIDIA GPU (``nvidia-smi -L`` lists none): the CPU build, ``torch==X+cpu`` from
  PyTorch's CPU wheel index when it is reachable, else a ``+cpu`` build the configured
  package index offers, else the index's default build (on Linux x86-64 PyPI's default is
  the CUDA build, ~2.5 GB with its NVIDIA libraries: said as a warning).
* An NVIDIA GPU: the index's default build (CUDA on Linux x86-64).

``X`` is the pin of ``requirements/constraints.txt``. ``$MUSIQ_TORCH=cpu|cuda`` overrides the
detection; ``$MUSIQ_TORCH_CPU_INDEX`` replaces the CPU index URL (a mirror). Prints which
build it installed.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass
class Plan:
    """One way to install torch: the requirement, extra pip arguments and what it gives."""

    build: str  # "cpu" or "cuda": what is wanted
    requirement: str
    pip_args: list[str] = field(default_factory=list)
    source: str = "the package index"
    warning: str | None = None


def pinned_version(constraints: Path = CONSTRAINTS) -> str:
    """``X`` of the ``torch==X`` line in the constraints file."""
    for line in constraints.read_text().splitlines():
        m = re.fullmatch(r"torch==([^\s;#+]+)(\+\S+)?\s*", line.strip())
        if m:
            return m.group(1)
    raise SystemExit(f"musiq setup: no torch==X pin in {constraints}")


def has_nvidia_gpu() -> bool:
    """True when ``nvidia-smi -L`` runs and lists a GPU."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def reachable(index: str, timeout: float = 5.0) -> bool:
    """True when the index answers for torch's page within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(index.rstrip("/") + "/torch/", timeout=timeout) as r:
            return 200 <= r.status < 400
    except Exception:  # noqa: BLE001 - any failure means: not usable now
        return False


def plans(version: str, gpu: bool, index: str | None) -> list[Plan]:
    """The installs to try, in order. ``index``: the CPU index when it is reachable."""
    if gpu:
        return [Plan("cuda", f"torch=={version}")]
    out = []
    if index:
        out.append(Plan("cpu", f"torch=={version}+cpu", ["--extra-index-url", index],
                        f"PyTorch's CPU index ({index})"))
    out.append(Plan("cpu", f"torch=={version}+cpu"))
    out.append(Plan("cpu", f"torch=={version}", warning=(
        "no CPU-only torch build was available (PyTorch's CPU index unreachable and none on "
        "the package index); installed the index's default build, which on Linux x86-64 is "
        "the CUDA build with its NVIDIA libraries")))
    return out


def choose() -> tuple[bool, list[Plan]]:
    """(GPU present, plans) for this machine, honouring ``$MUSIQ_TORCH``."""
    wanted = os.environ.get("MUSIQ_TORCH", "").strip().lower()
    gpu = {"cpu": False, "cuda": True}.get(wanted)
    if gpu is None:
        gpu = has_nvidia_gpu()
    index = os.environ.get("MUSIQ_TORCH_CPU_INDEX") or CPU_INDEX
    return gpu, plans(pinned_version(), gpu, None if gpu or not reachable(index) else index)


def installed_build() -> str:
    """``torch 2.13.0+cpu (CPU build)`` or ``torch 2.13.0 (CUDA 12.8 build)``."""
    code = "import torch; print(torch.__version__, torch.version.cuda or '')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    version, _, cuda = out.stdout.strip().partition(" ")
    return f"torch {version} ({f'CUDA {cuda}' if cuda else 'CPU'} build)"


def main(argv: list[str]) -> int:
    gpu, todo = choose()
    why = "an NVIDIA GPU was found" if gpu else "no NVIDIA GPU was found"
    if "--dry-run" in argv:
        for p in todo:
            print(f"{p.build}: {p.requirement} from {p.source} {' '.join(p.pip_args)}".rstrip())
        print(f"musiq setup: would install the {todo[0].build.upper()} build ({why})")
        return 0
    for i, plan in enumerate(todo):
        last = i == len(todo) - 1
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "-c", str(CONSTRAINTS),
               *plan.pip_args, plan.requirement]
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL,
                              stderr=None if last else subprocess.DEVNULL)
        if done.returncode == 0:
            if plan.warning:
                print(f"musiq setup: warning: {plan.warning}", file=sys.stderr)
            print(f"musiq setup: {installed_build()} from {plan.source} ({why})",
                  file=sys.stderr)
            return 0
    print("musiq setup: could not install torch (see pip's message above)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
