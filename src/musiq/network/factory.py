"""Make a MUSIQ network: from a registry name, a checkpoint path, or an architecture.

    >>> net = create_model("koniq")                   # official weights, found or downloaded
    >>> net = create_model("path/to/mine.npz")        # any official-format checkpoint
    >>> net = create_model(arch=Architecture(num_classes=10))   # random initialisation

This is the one place where a name or path becomes weights: :func:`musiq.load` (scoring),
training and export all start here. The network records where it came from in
``net.source`` (:class:`ModelSource`). :func:`read_model` stops before the network: it reads
and checks the file with NumPy only (no torch import), which is all a runtime with a cached
conversion needs; :meth:`ModelFile.build` makes the network when it is needed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .architecture import LAYER_NORM_EPS, OFFICIAL, Architecture, official_parameters
from .checkpoint import load_checkpoint
from .download import ensure_checkpoint
from ..errors import CheckpointError
from .registry import REGISTRY, ModelInfo, canonical_name, get_info

if TYPE_CHECKING:
    from .model import Musiq


@dataclass(frozen=True)
class ModelSource:
    """Where a network's weights came from: ``path`` of the checkpoint (None: random
    initialisation) and ``info``, the registry entry when it was named (None for a path)."""

    path: Path | None = None
    info: ModelInfo | None = None

    @property
    def name(self) -> str:
        """The registry name, else the file name, else ``musiq``."""
        return self.info.name if self.info else (self.path.name if self.path else "musiq")


def resolve_checkpoint(model: str | os.PathLike, *,
                       checkpoint_dir: str | os.PathLike | None = None,
                       offline: bool | None = None) -> tuple[Path, ModelInfo | None]:
    """The checkpoint file for a registry name (found or downloaded) or a path.

    A name is looked up in ``checkpoint_dir``, ``$MUSIQ_CHECKPOINT_DIR``,
    ``./musiq_original/checkpoints/`` and the user cache, and downloaded when it is found
    nowhere, unless ``offline`` (default: ``$MUSIQ_OFFLINE``).
    """
    text = os.fspath(model)
    if canonical_name(text) in REGISTRY and not Path(text).is_file():
        info = get_info(text)
        return ensure_checkpoint(info, checkpoint_dir, offline=offline), info
    path = Path(text)
    if not path.exists() and not text.endswith(".npz"):
        get_info(text)  # raises: unknown name, listing the known ones
    return path, None


@dataclass(frozen=True)
class ModelFile:
    """A checkpoint read and checked, its network not built yet: ``params`` (official names
    without ``opt/target/`` -> float32 arrays), ``variant`` (the architecture its shapes
    give) and ``source``."""

    params: dict = field(repr=False)
    variant: Architecture
    source: ModelSource

    def build(self, stem_chunk: int = 256) -> "Musiq":
        """The :class:`~musiq.network.model.Musiq` network of these weights (imports torch),
        in float32 on the CPU, in training mode off."""
        from .model import Musiq
        net = Musiq(self.variant, stem_chunk=stem_chunk).load_official(self.params)
        net.source = self.source
        return net.eval()

    def final_norm_and_head(self) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
        """``(gamma, beta, eps, kernel (hidden, classes), bias)`` of the final LayerNorm and
        the head, float32: what a runtime that stops at the CLS state applies itself."""
        key = {p.attr: p.key for p in official_parameters(self.variant)}
        gamma, beta, kernel, bias = (np.asarray(self.params[key[attr]], dtype=np.float32)
                                     for attr in ("encoder_norm.weight", "encoder_norm.bias",
                                                  "head.weight", "head.bias"))
        return gamma, beta, LAYER_NORM_EPS, kernel.reshape(self.variant.hidden, -1), bias


def read_model(model: str | os.PathLike, *, arch: Architecture | None = None,
               checkpoint_dir: str | os.PathLike | None = None,
               offline: bool | None = None) -> ModelFile:
    """The checkpoint of a registry name or ``.npz`` path, read and checked (NumPy only):
    its variant is detected from the file's shapes and must match the name (and ``arch``
    when given). Raises :class:`~musiq.errors.CheckpointError` naming the file and the
    problem."""
    path, info = resolve_checkpoint(model, checkpoint_dir=checkpoint_dir, offline=offline)
    params, variant = load_checkpoint(path)
    if info is not None and (variant.num_classes != info.num_classes
                             or variant.single_scale != info.single_scale):
        raise CheckpointError(
            f"{path}: the file is not a '{info.name}' checkpoint: it has "
            f"{variant.num_classes} output(s) and {variant.num_scales} scale(s), expected "
            f"{info.num_classes} and {1 if info.single_scale else 3}")
    if arch is not None and arch != variant:
        raise CheckpointError(f"{path}: the file's architecture {variant} is not {arch}")
    return ModelFile(params, variant, ModelSource(path, info))


def create_model(model: str | os.PathLike | None = None, *, arch: Architecture | None = None,
                 checkpoint_dir: str | os.PathLike | None = None,
                 offline: bool | None = None, stem_chunk: int = 256) -> "Musiq":
    """A :class:`~musiq.network.model.Musiq` network in float32 on the CPU, in training mode off.

    ``model``: a registry name (``koniq``, ``ava``, ``spaq-single`` ...) or a ``.npz`` path;
    its variant (head size, single or multi-scale) is detected from the file's shapes and
    must match the name. None: a randomly initialised network of ``arch`` (default: the
    official architecture with one output). Raises :class:`~musiq.errors.CheckpointError`
    naming the file and the problem.
    """
    if model is None:
        from .model import Musiq
        net = Musiq(arch or OFFICIAL, stem_chunk=stem_chunk)
        net.source = ModelSource()
        return net.eval()
    return read_model(model, arch=arch, checkpoint_dir=checkpoint_dir,
                      offline=offline).build(stem_chunk)
