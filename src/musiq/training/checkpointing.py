"""The files of a fine-tuning run: per-epoch checkpoints, the best one, the resume state.

``work_dir/epoch_NNN.npz`` (official format, the newest ``keep`` kept), ``best.npz`` (the
chosen epoch), ``state.pt`` (model, optimizer, schedule and history, from which a run resumes
exactly) and ``history.json``. Every file is written under a temporary name created
exclusively and renamed (:mod:`musiq.atomic`), so a crash never leaves half a file and a link
planted there is never followed.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write, replace_with
from ..network.checkpoint import load_checkpoint, save_checkpoint
from ..errors import MusiqError


class RunFiles:
    """The work directory of one run (created on first write)."""

    def __init__(self, work_dir: str | os.PathLike, keep: int = 3) -> None:
        self.dir = Path(work_dir)
        self.keep = max(int(keep), 1)

    @property
    def best(self) -> Path:
        return self.dir / "best.npz"

    @property
    def state(self) -> Path:
        return self.dir / "state.pt"

    def save_epoch(self, epoch: int, params: dict[str, np.ndarray], state: dict,
                   improved: bool) -> Path:
        """Write epoch ``epoch``'s checkpoint (and ``best.npz`` when ``improved``), prune the
        old ones, then the resume state."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = save_checkpoint(self.dir / f"epoch_{epoch:03d}.npz", params)
        if improved:
            _copy(path, self.best)
        old = sorted(self.dir.glob("epoch_*.npz"))
        for p in old[:max(len(old) - self.keep, 0)]:
            p.unlink()
        with atomic_write(self.state, "wb") as f:
            torch.save(state, f)
        return path

    def load_state(self) -> dict | None:
        """The saved resume state, or None when there is none."""
        if not self.state.is_file():
            return None
        try:
            return torch.load(self.state, map_location="cpu", weights_only=True)
        except Exception as e:
            raise MusiqError(f"{self.state}: cannot read the resume state ({e})") from None

    def best_params(self) -> dict[str, np.ndarray]:
        params, _ = load_checkpoint(self.best)
        return params

    def publish(self, output: str | os.PathLike) -> Path:
        """Copy the best checkpoint to ``output`` (atomically; its folder is created)."""
        out = Path(output)
        if out.parent != Path(""):
            out.parent.mkdir(parents=True, exist_ok=True)
        _copy(self.best, out)
        return out


def _copy(src: Path, dest: Path) -> None:
    replace_with(dest, lambda tmp: shutil.copyfile(src, tmp))
