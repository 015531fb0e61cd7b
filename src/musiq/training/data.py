"""Labelled images as model inputs: decode, optional horizontal flip, preprocess, batch.

A flip mirrors the decoded pixels *before* preprocessing, so the multi-scale resizes,
patches and hashed positions are those of the mirrored image. Whether image ``i`` is flipped
in epoch ``e`` depends only on ``(seed, e, i)``, so runs (and resumed runs) are repeatable
whatever the number of loader workers. Tokens can be kept in memory up to a byte budget:
with flips there are only two variants of each image, so small sets are preprocessed once.
An image that cannot be decoded becomes an example with ``error`` set; :func:`collate`
leaves it out of the batch and reports it in :attr:`Batch.skipped`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ImageError
from ..failures import describe_failure
from ..evaluation.labels import LabelItem
from ..network.model import PackedBatch
from ..tokens.preprocess import Tokens
from ..tokens.preprocessor import Preprocessor


@dataclass
class Example:
    """One model input: tokens, the target (``(1,)`` MOS or ``(K,)`` distribution) and
    the index of its label row; ``tokens`` is None and ``error`` says why for a bad image."""

    tokens: Tokens | None
    target: np.ndarray
    index: int
    error: str | None = None


class TokenCache:
    """Tokens by key, kept until ``budget_bytes`` is used up (then new ones are not kept)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.used = 0
        self.store: dict[tuple[int, bool], Tokens] = {}

    def get(self, key: tuple[int, bool]) -> Tokens | None:
        return self.store.get(key)

    def put(self, key: tuple[int, bool], tokens: Tokens) -> None:
        size = tokens.patches.nbytes + tokens.positions.nbytes + tokens.scale_ids.nbytes
        if self.used + size <= self.budget:
            self.store[key] = tokens
            self.used += size


class LabelledImages(Dataset):
    """``dataset[(i, flipped)]`` -> :class:`Example` for label row ``i``.

    ``target``: ``"mos"`` (the row's MOS) or ``"distribution"`` (its normalised bins).
    ``preprocessor``: decoding and preprocessing (for training, with
    ``max_seq_len_from_original_res`` set).
    """

    def __init__(self, items: list[LabelItem], preprocessor: Preprocessor, target: str, *,
                 cache_bytes: int = 0) -> None:
        self.items = items
        self.preprocessor = preprocessor
        self.target = target
        self.cache = TokenCache(cache_bytes)

    def __len__(self) -> int:
        return len(self.items)

    def target_of(self, i: int) -> np.ndarray:
        item = self.items[i]
        if self.target == "distribution":
            return np.asarray(item.distribution, np.float32)
        return np.array([item.mos], np.float32)

    def tokens(self, i: int, flipped: bool = False) -> Tokens:
        tok = self.cache.get((i, flipped))
        if tok is None:
            path = self.items[i].path
            rgb = self.preprocessor.pixels(path)
            if flipped:
                rgb = np.ascontiguousarray(rgb[:, ::-1])
            tok = self.preprocessor.tokens_of_pixels(rgb, str(path))
            self.cache.put((i, flipped), tok)
        return tok

    def __getitem__(self, key: tuple[int, bool]) -> Example:
        i, flipped = key
        try:
            return Example(self.tokens(i, flipped), self.target_of(i), i)
        except (ImageError, MemoryError) as e:  # any other error is a bug: it propagates
            return Example(None, self.target_of(i), i, error=describe_failure(e, "decoding"))


class EpochView(Dataset):
    """The examples of one epoch, in its order: ``view[k] = dataset[order[k]]``."""

    def __init__(self, dataset: LabelledImages, order: list[tuple[int, bool]]) -> None:
        self.dataset, self.order = dataset, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> Example:
        return self.dataset[self.order[k]]


def epoch_order(n: int, epoch: int, seed: int, flip: bool) -> list[tuple[int, bool]]:
    """The shuffled ``(index, flipped)`` pairs of one epoch (deterministic in the seed)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    flips = rng.random(n) < 0.5 if flip else np.zeros(n, bool)
    return [(int(i), bool(flips[i])) for i in order]


@dataclass
class Batch:
    """Packed tokens of several images, their targets ``(B, 1|K)`` and label-row indices;
    ``inputs`` is None when every image of the batch failed. ``skipped``: ``(label-row index,
    reason)`` of the images left out."""

    inputs: PackedBatch | None
    targets: torch.Tensor
    indices: list[int]
    skipped: list[tuple[int, str]]


def collate(examples: list[Example]) -> Batch:
    good = [e for e in examples if e.tokens is not None]
    skipped = [(e.index, e.error or "unreadable") for e in examples if e.tokens is None]
    packed = PackedBatch.from_tokens([e.tokens for e in good]) if good else None
    targets = (torch.from_numpy(np.stack([e.target for e in good])) if good
               else torch.zeros(0))
    return Batch(packed, targets, [e.index for e in good], skipped)
