"""Fine-tuning settings, with the published MUSIQ recipe where it is known.

Published (Ke et al. 2021): SGD with momentum 0.9, cosine learning-rate decay with warm-up,
random horizontal flips, native-resolution tokens capped per image during training (512),
the ImageNet head replaced by one output (MOS, regression) or ten (AVA, EMD loss with
r = 2). Learning rate, batch size and epochs depend on the data set and the hardware (the
paper trained on TPUs with batches of 96-512), so the defaults below are starting points
for a few thousand images on one GPU.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..decoding.decode import DEFAULT_MAX_PIXELS
from ..errors import MusiqError
from ..evaluation.labels import LabelColumns
from .losses import LOSSES


@dataclass
class TrainConfig:
    """Everything a fine-tuning run needs.

    Data: ``labels``/``val`` label files (``columns`` says where things are); ``images`` and
    ``val_images`` the folders image names are relative to (default: each file's folder).
    Model: ``init`` a registry name (``imagenet``, ``koniq`` ...) or a ``.npz`` path;
    ``outputs`` 1 (MOS) or 10 (distribution), default from the labels; ``new_head``
    replaces the head even when its size already fits; ``head_init`` for a new MOS head:
    ``zero`` (weights 0, bias the label mean) or ``probe`` (closed-form ridge fit on the
    training images' features first, then fine-tuning: "LP-FT").
    Optimisation: ``epochs``; ``batch_size`` images per forward pass; ``accumulate``
    passes per optimizer step (effective batch = both multiplied); ``lr`` peak learning rate
    (SGD, ``momentum``, ``weight_decay``); ``warmup_epochs`` of linear warm-up, then cosine
    decay to 0; ``clip_grad`` max gradient L2 norm (0 = off); ``loss``: ``auto`` (l2 for a
    MOS, emd for a distribution), ``l1``, ``l2`` or ``emd`` (``emd_r``). L1/L2 are divided
    by the training labels' standard deviation so one learning rate suits any MOS scale.
    Inputs: ``flip`` random horizontal flips; ``max_native_tokens`` cap on native-scale
    tokens per training image (validation uses all, as the original's evaluation).
    Freezing: ``freeze_stem`` (patch stem + embedding), ``freeze_blocks`` N: everything
    below encoder block N (stem, position/scale embeddings, CLS, blocks 0..N-1 of 14). Runtime: ``device`` (auto/cpu/cuda), ``amp`` (auto = bfloat16 on CUDA,
    off on CPU; bf16, fp16, off), ``workers`` loader processes, ``cache_mb`` memory for
    keeping preprocessed tokens, ``seed``. Output: ``output`` the final official-format
    ``.npz`` (the epoch with the best validation SRCC); ``work_dir`` holds the per-epoch
    checkpoints (``keep_checkpoints`` newest kept), the resume state and ``history.json``;
    an existing ``output`` is refused unless ``force`` (or ``resume``).

    Every setting is checked when the config is made (:class:`~musiq.errors.MusiqError`).
    """

    labels: str | os.PathLike
    output: str | os.PathLike
    val: str | os.PathLike | None = None
    images: str | os.PathLike | None = None
    val_images: str | os.PathLike | None = None
    columns: LabelColumns = field(default_factory=LabelColumns)
    init: str | os.PathLike = "imagenet"
    checkpoint_dir: str | os.PathLike | None = None
    outputs: int | None = None
    new_head: bool = False
    head_init: str = "zero"
    epochs: int = 10
    batch_size: int = 16
    accumulate: int = 1
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_epochs: float = 1.0
    clip_grad: float = 1.0
    loss: str = "auto"
    emd_r: float = 2.0
    flip: bool = True
    max_native_tokens: int = 512
    freeze_stem: bool = False
    freeze_blocks: int = 0
    device: str = "auto"
    amp: str = "auto"
    workers: int = 0
    cache_mb: int = 1024
    seed: int = 0
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    work_dir: str | os.PathLike | None = None
    keep_checkpoints: int = 3
    resume: bool = False
    force: bool = False

    def __post_init__(self) -> None:
        choices = {"head_init": ("zero", "probe"), "amp": ("auto", "bf16", "fp16", "off"),
                   "loss": ("auto", *LOSSES)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise MusiqError(f"{name} must be one of {', '.join(allowed)}, "
                                 f"not {getattr(self, name)!r}")
        positive = ("epochs", "batch_size", "accumulate", "keep_checkpoints")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise MusiqError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.outputs is not None and self.outputs < 1:
            raise MusiqError(f"outputs must be positive, not {self.outputs}")
        if self.lr <= 0 or self.emd_r <= 0:
            raise MusiqError("lr and emd_r must be positive")
        if self.workers < 0 or self.cache_mb < 0 or self.freeze_blocks < 0:
            raise MusiqError("workers, cache_mb and freeze_blocks must not be negative")
        if self.max_native_tokens == 0 or self.max_native_tokens < -1:
            raise MusiqError("max_native_tokens must be positive or -1 (all)")

    def check_output(self) -> None:
        """Refuse to overwrite an existing output unless ``force`` or ``resume``."""
        out = Path(self.output)
        if out.exists() and not (self.force or self.resume):
            raise MusiqError(f"{out} exists; refusing to overwrite it (use --force, or "
                             "another --output)")

    def resolved_work_dir(self) -> Path:
        if self.work_dir is not None:
            return Path(self.work_dir)
        out = Path(self.output)
        return out.with_name(out.stem + ".train")

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in d.items()}
