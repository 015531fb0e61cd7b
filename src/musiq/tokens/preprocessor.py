"""Everything that turns an input into model tokens, as one picklable object.

A :class:`Preprocessor` holds the settings of decoding (pixel limit, EXIF orientation) and of
preprocessing (scales, caps). The scorer, its worker processes, the service and training all
call it; it is small and frozen, so it is what travels to a worker process.

    >>> pp = Preprocessor(MULTI_SCALE)
    >>> rgb = pp.pixels("photo.jpg")          # (H, W, 3) uint8, exactly as TF decodes it
    >>> tokens = pp.tokens_of_pixels(rgb)     # or pp.tokens("photo.jpg")

Two backends make the same tokens (bit-equal on the golden images): ``numpy`` (the host,
:mod:`musiq.tokens.preprocess`) and ``torch`` (:mod:`musiq.tokens.preprocess_torch`, on ``device``, several
images at once). With the torch backend the pipeline carries decoded pixels
(:meth:`Preprocessor.decode`) and tokens are made on the scoring device
(:meth:`Preprocessor.tokenize`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from ..decoding.decode import DEFAULT_MAX_PIXELS, ImageInput, load_image, source_name
from ..errors import ImageError
from ..failures import describe_failure
from .preprocess import MULTI_SCALE, PreprocessConfig, Tokens, preprocess, token_count

if TYPE_CHECKING:  # torch is imported lazily: decode workers of the NumPy path skip it
    import torch

    from .preprocess_torch import TorchTokens

BACKENDS = ("numpy", "torch")


@dataclass
class Prepared:
    """One input after decoding (and preprocessing): ``tokens``, ``pixels`` or ``error`` is set.

    ``index``: its position in the input stream; ``source``: its name (see
    :func:`musiq.decoding.decode.source_name`); ``pixels``: decoded ``(H, W, 3)`` uint8 when the
    tokens are to be made later, on the scoring device; ``num_tokens``: the valid tokens
    those pixels will give; ``variants``: one item per preprocessing when several models
    are scored together (:mod:`musiq.tokens.shared`).
    """

    index: int
    source: str
    tokens: Tokens | None = None
    error: str | None = None
    pixels: np.ndarray | None = None
    num_tokens: int = 0
    variants: "tuple[Prepared, ...] | None" = None  # several preprocessings (tokens/shared.py)

    @property
    def ok(self) -> bool:
        return self.error is None and (self.tokens is not None or self.pixels is not None)

    def __len__(self) -> int:
        return len(self.tokens) if self.tokens is not None else self.num_tokens


@dataclass(frozen=True)
class Preprocessor:
    """Decoding and preprocessing settings, and the functions that apply them.

    ``config``: the original's preprocessing configuration (scales, patch size, native-token
    cap); ``max_pixels``: images above this many pixels are refused from their header (None:
    no limit); ``exif_transpose``: apply the EXIF orientation (the original does not);
    ``backend``: ``numpy`` or ``torch``; ``device``: where the torch backend runs (``cpu``,
    ``cuda``, ``cuda:N``; a string, so that the object stays picklable); ``max_tokens``:
    images that would make more valid tokens are refused before they are tokenised (None:
    no bound; the model's cost grows with the square of the token count).
    """

    config: PreprocessConfig = field(default=MULTI_SCALE)
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    exif_transpose: bool = False
    backend: str = "numpy"
    device: str = "cpu"
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ValueError(f"max_pixels must be positive or None, not {self.max_pixels}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, "
                             f"not {self.backend!r}")

    def pixels(self, image: ImageInput) -> np.ndarray:
        """Decode any accepted input to ``(H, W, 3)`` uint8 RGB (raises :class:`ImageError`)."""
        return load_image(image, max_pixels=self.max_pixels, exif_transpose=self.exif_transpose)

    def check_tokens(self, height: int, width: int, source: str) -> int:
        """The valid tokens of an ``height`` x ``width`` image; raises :class:`ImageError`
        above :attr:`max_tokens`."""
        n = token_count(height, width, self.config)
        if self.max_tokens is not None and n > self.max_tokens:
            raise ImageError(source, f"image of {width}x{height} pixels would make {n:,} "
                                     f"tokens, above the limit of {self.max_tokens:,} per "
                                     "image (--max-tokens; its cost grows with the square "
                                     "of the tokens)")
        return n

    def tokens_of_pixels(self, rgb: np.ndarray, source: str = "<array>") -> Tokens:
        """Tokens of decoded ``(H, W, 3)`` uint8 pixels (raises :class:`ImageError`), made by
        :attr:`backend`; NumPy arrays on the host either way."""
        if getattr(rgb, "ndim", 0) == 3:
            self.check_tokens(rgb.shape[0], rgb.shape[1], source)
        if self.backend == "torch":
            from .preprocess_torch import tokenize_one
            return tokenize_one(rgb, self.config, source, self.device)
        return preprocess(rgb, self.config, source)

    def tokenize(self, pixels: "list[np.ndarray | torch.Tensor]",
                 sources: "list[str] | None" = None) -> "TorchTokens":
        """Packed tokens of several decoded images, made by torch on :attr:`device` (whatever
        :attr:`backend`; raises :class:`ImageError` for an array that is not an image)."""
        from .preprocess_torch import tokenize
        return tokenize(pixels, self.config, device=self.device, sources=sources)

    def num_tokens(self, height: int, width: int) -> int:
        """Valid tokens an ``height`` x ``width`` image gives, from its size alone."""
        return token_count(height, width, self.config)

    def decode(self, index: int, image: ImageInput) -> Prepared:
        """Decode one input to ``pixels`` (tokens are made later); never raises."""
        def decoded(source: str) -> Prepared:
            rgb = self.pixels(image)
            return Prepared(index, source, pixels=rgb,
                            num_tokens=self.check_tokens(rgb.shape[0], rgb.shape[1], source))
        return _never_raising(index, image, decoded, "decoding")

    def tokens(self, image: ImageInput) -> Tokens:
        """Decode and preprocess one input (raises :class:`ImageError`)."""
        return self.tokens_of_pixels(self.pixels(image), source_name(image))

    def prepare(self, index: int, image: ImageInput) -> Prepared:
        """Decode and preprocess one input; any failure becomes ``error`` (never raises)."""
        return _never_raising(index, image,
                              lambda source: Prepared(index, source, tokens=self.tokens(image)),
                              "decoding/preprocessing")

    def with_config(self, **changes) -> "Preprocessor":
        """A copy with preprocessing settings changed (e.g. ``max_seq_len_from_original_res``)."""
        return replace(self, config=replace(self.config, **changes))


def _never_raising(index: int, image: ImageInput, make, what: str) -> Prepared:
    """``make(source)``, with any failure turned into a :class:`Prepared` with ``error``."""
    source = source_name(image)
    try:
        return make(source)
    except Exception as e:  # one odd file must not stop a run over thousands
        return Prepared(index, source, error=describe_failure(e, what))
