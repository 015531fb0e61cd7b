"""Decode an image once and make tokens for several preprocessings (several models).

Models that read the same preprocessing (every multi-scale checkpoint) share one set of
tokens; a single-scale model in the mix gets its own, from the same decoded pixels. A
:class:`SharedPreprocessor` is picklable and stands where a
:class:`~musiq.tokens.preprocessor.Preprocessor` stands in :func:`musiq.tokens.pipeline.
iter_prepared` (its ``prepare`` and ``decode``), so worker processes decode once too.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..decoding.decode import ImageInput
from ..failures import describe_failure
from .preprocessor import Prepared, Preprocessor, _never_raising

__all__ = ["SharedPreprocessor"]


@dataclass(frozen=True)
class SharedPreprocessor:
    """Several distinct :class:`Preprocessor` s that share their decoding settings (pixel
    limit, EXIF orientation, backend and device); the first decodes."""

    preprocessors: tuple[Preprocessor, ...]

    def __post_init__(self) -> None:
        if not self.preprocessors:
            raise ValueError("SharedPreprocessor needs at least one preprocessor")
        first = self.preprocessors[0]
        for pp in self.preprocessors[1:]:
            if (pp.max_pixels, pp.exif_transpose, pp.backend, pp.device) != (
                    first.max_pixels, first.exif_transpose, first.backend, first.device):
                raise ValueError("models scored together must share max_pixels, "
                                 "exif_transpose, where tokens are made and the device")

    def decode(self, index: int, image: ImageInput) -> Prepared:
        """Decode one input to ``pixels`` (each preprocessing checks its token bound in
        :meth:`split`); never raises."""
        first = self.preprocessors[0]
        return _never_raising(index, image,
                              lambda source: Prepared(index, source, pixels=first.pixels(image)),
                              "decoding")

    def prepare(self, index: int, image: ImageInput) -> Prepared:
        """Decode once and make every preprocessing's tokens: the item's ``variants`` hold
        one :class:`Prepared` per preprocessing (tokens, or that preprocessing's error);
        ``error`` is set when decoding failed. Never raises."""
        item = self.decode(index, image)
        if item.pixels is None:
            return item
        variants = []
        for pp in self.preprocessors:
            try:
                variants.append(Prepared(index, item.source,
                                         tokens=pp.tokens_of_pixels(item.pixels, item.source)))
            except Exception as e:  # one preprocessing's failure, not the other models'
                variants.append(Prepared(index, item.source,
                                         error=describe_failure(e, "preprocessing")))
        return Prepared(index, item.source, variants=tuple(variants))

    def split(self, item: Prepared, index: int | None = None) -> tuple[Prepared, ...]:
        """One :class:`Prepared` per preprocessing for an item of :meth:`prepare` or
        :meth:`decode` (pixels shared, each with its own token count and bound), numbered
        ``index`` (default: the item's)."""
        index = item.index if index is None else index
        if item.variants is not None:
            return tuple(replace(v, index=index) for v in item.variants)
        if item.pixels is None:
            return tuple(Prepared(index, item.source, error=item.error or "not decoded")
                         for _ in self.preprocessors)
        out = []
        h, w = item.pixels.shape[:2]
        for pp in self.preprocessors:
            try:
                n = pp.check_tokens(h, w, item.source)
                out.append(Prepared(index, item.source, pixels=item.pixels, num_tokens=n))
            except Exception as e:
                out.append(Prepared(index, item.source,
                                    error=describe_failure(e, "preprocessing")))
        return tuple(out)
