"""Find checkpoint files on disk.

Search order for a model name: an explicit directory argument, ``$MUSIQ_CHECKPOINT_DIR``,
``./musiq_original/checkpoints/`` (the working directory), ``musiq_original/checkpoints/``
beside the installation (the checkout that ``musiq.sh`` and an editable install run from)
and the user cache directory. Each directory is searched for the upstream layout
(``<dir>/koniq_ckpt.npz``, ``<dir>/full_size_single_scale/koniq_ckpt.npz``); a
single-scale file may also lie flat as ``<dir>/koniq_single_koniq_ckpt.npz``.
"""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from ..errors import CheckpointNotFound
from ..extras import install_root  # noqa: F401  (this module's name for it too)
from .registry import ModelInfo

ENV_DIR = "MUSIQ_CHECKPOINT_DIR"
LOCAL_DIR = Path("musiq_original") / "checkpoints"
#: Replace ``./musiq_original/checkpoints`` and the one beside the installation in the search
#: (tests point them at empty folders, so that a user's own checkpoints never change what
#: they see).
ENV_LOCAL_DIR = "MUSIQ_LOCAL_DIR"
ENV_INSTALLED_DIR = "MUSIQ_INSTALLED_DIR"


def local_dir() -> Path:
    """``./musiq_original/checkpoints`` (relative to the working directory) or
    ``$MUSIQ_LOCAL_DIR``."""
    return Path(os.environ.get(ENV_LOCAL_DIR) or LOCAL_DIR)


def installed_dir() -> Path | None:
    """``musiq_original/checkpoints`` beside the installation, or ``$MUSIQ_INSTALLED_DIR``
    (None for an installed wheel)."""
    if os.environ.get(ENV_INSTALLED_DIR):
        return Path(os.environ[ENV_INSTALLED_DIR])
    root = install_root()
    return None if root is None else root / LOCAL_DIR


def cache_dir() -> Path:
    """The per-user cache directory for checkpoints (created on demand by downloaders)."""
    return Path(platformdirs.user_cache_dir("musiq")) / "checkpoints"


def search_dirs(checkpoint_dir: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched, in order."""
    dirs: list[Path] = []
    if checkpoint_dir:
        dirs.append(Path(checkpoint_dir))
    if os.environ.get(ENV_DIR):
        dirs.append(Path(os.environ[ENV_DIR]))
    dirs.append(local_dir())
    beside = installed_dir()
    if beside is not None and beside.absolute() != local_dir().absolute():
        dirs.append(beside)
    dirs.append(cache_dir())
    return dirs


def candidates(info: ModelInfo, directory: Path) -> list[Path]:
    paths = [directory / info.relpath]
    if info.single_scale:  # also accept a flat name for the single-scale file
        paths.append(directory / f"{info.name.replace('-', '_')}_{info.filename}")
    return paths


def find_checkpoint(info: ModelInfo, checkpoint_dir: str | os.PathLike | None = None) -> Path:
    """Path of the file for a registry model; raises :class:`CheckpointNotFound` saying what to do."""
    tried = []
    for d in search_dirs(checkpoint_dir):
        tried.append(d / info.relpath)  # the documented layout; the flat name is accepted too
        for p in candidates(info, d):
            if p.is_file():
                return p
    target = search_dirs(checkpoint_dir)[0] / info.relpath
    lines = [
        f"checkpoint for model '{info.name}' ({info.filename}, {info.description}) not found.",
        "Looked in:",
        *[f"  {p}" for p in tried],
        "Download the official file (about 155 MB; 315 MB for imagenet) from",
        f"  {info.url}",
        "and put it at one of the places above, for example:",
        f"  mkdir -p {target.parent} && curl -L -o {target} {info.url}",
        f"or pass its path with --model PATH, or set {ENV_DIR} to its directory.",
    ]
    raise CheckpointNotFound("\n".join(lines))
