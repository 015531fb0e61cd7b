"""The official MUSIQ checkpoints: names, files, training data and output ranges.

Config as data: one :class:`ModelInfo` per released file. Ranges are those of the TF Hub
model documentation: KonIQ, SPAQ and PaQ-2-PiQ predict a MOS on 0-100; AVA predicts the mean
of a 10-bin score distribution, 1-10.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import MusiqError
from .outputs import output_kind
from ..suggest import did_you_mean

BASE_URL = "https://storage.googleapis.com/gresearch/musiq/"
SINGLE_DIR = "full_size_single_scale/"


@dataclass(frozen=True)
class ModelInfo:
    """One official checkpoint.

    ``kind``: ``mos`` (one output), ``distribution`` (10-bin AVA), ``imagenet`` (1000 classes).
    ``score_range``: the range of the score in the dataset's units (None for ImageNet).
    ``subdir``: where the file lives below a checkpoint directory (and the bucket).
    """

    name: str
    filename: str
    dataset: str
    kind: str
    single_scale: bool
    score_range: tuple[float, float] | None
    description: str

    @property
    def num_classes(self) -> int:
        return output_kind(self.kind).num_classes  # type: ignore[return-value]

    @property
    def subdir(self) -> str:
        return SINGLE_DIR if self.single_scale else ""

    @property
    def relpath(self) -> str:
        return self.subdir + self.filename

    @property
    def url(self) -> str:
        return BASE_URL + self.relpath


def _quality(name: str, filename: str, dataset: str, kind: str, rng: tuple[float, float],
             what: str) -> list[ModelInfo]:
    return [
        ModelInfo(name, filename, dataset, kind, False, rng, f"{what} (multi-scale)"),
        ModelInfo(name + "-single", filename, dataset, kind, True, rng,
                  f"{what} (MUSIQ-single: native resolution only)"),
    ]


REGISTRY: dict[str, ModelInfo] = {
    m.name: m for m in [
        *_quality("koniq", "koniq_ckpt.npz", "KonIQ-10k", "mos", (0.0, 100.0),
                  "technical quality, MOS 0-100"),
        *_quality("spaq", "spaq_ckpt.npz", "SPAQ", "mos", (0.0, 100.0),
                  "smartphone photo quality, MOS 0-100"),
        *_quality("paq2piq", "paq2piq_ckpt.npz", "PaQ-2-PiQ", "mos", (0.0, 100.0),
                  "in-the-wild quality, MOS 0-100"),
        *_quality("ava", "ava_ckpt.npz", "AVA", "distribution", (1.0, 10.0),
                  "aesthetics, mean of a 10-bin distribution 1-10"),
        ModelInfo("imagenet", "imagenet_pretrain.npz", "ImageNet", "imagenet", False, None,
                  "ImageNet-pretrained backbone: 1000-class logits, for fine-tuning"),
    ]
}


#: Other names for registry entries: pyiqa's metric names.
ALIASES: dict[str, str] = {"musiq-koniq": "koniq", "musiq-spaq": "spaq",
                           "musiq-paq2piq": "paq2piq", "musiq-ava": "ava"}


def canonical_name(name: str) -> str:
    """A model name as the registry spells it (case, ``_`` for ``-`` and aliases folded)."""
    key = name.lower().replace("_", "-")
    return ALIASES.get(key, key)


def get_info(name: str) -> ModelInfo:
    """Registry entry for a model name (case-insensitive, aliases such as ``musiq-koniq``
    accepted); raises listing the known names."""
    key = canonical_name(name)
    if key not in REGISTRY:
        hint = did_you_mean(key, [*REGISTRY, *ALIASES])
        raise MusiqError(f"unknown model '{name}'{hint}; known models: {', '.join(REGISTRY)} "
                         "(or give the path of a .npz checkpoint)")
    return REGISTRY[key]


#: What ``--model all`` means: every official quality and aesthetic model, in this order.
ALL_MODELS = ("koniq", "spaq", "paq2piq", "ava")


def split_models(values: "str | list[str] | tuple[str, ...]") -> list[str]:
    """Model names or paths from ``--model`` values: each value may hold several, separated
    by commas (a value that is an existing file is kept whole, commas and all); ``all`` is
    :data:`ALL_MODELS`. Order is kept; nothing is looked up here."""
    import os
    out: list[str] = []
    for value in [values] if isinstance(values, str) else values:
        value = os.fspath(value)
        parts = [value] if os.path.exists(value) else [v.strip() for v in value.split(",")]
        for part in parts:
            if not part:
                continue
            out.extend(ALL_MODELS if part.lower() == "all" else [part])
    if not out:
        raise MusiqError("no model given (--model NAME|PATH[,NAME|PATH...] or 'all')")
    return out
