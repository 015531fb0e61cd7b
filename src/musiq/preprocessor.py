"""Everything that turns an input into model tokens, as one picklable object.

A :class:`Preprocessor` holds the settings of decoding (pixel limit, EXIF orientation) and of
preprocessing (scales, caps). The scorer, its worker processes, the service and training all
call it; it is small and frozen, so it is what travels to a worker process.

    >>> pp = Preprocessor(MULTI_SCALE)
    >>> rgb = pp.pixels("photo.jpg")          # (H, W, 3) uint8, exactly as TF decodes it
    >>> tokens = pp.tokens_of_pixels(rgb)     # or pp.tokens("photo.jpg")
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .decode import DEFAULT_MAX_PIXELS, ImageInput, load_image, source_name
from .errors import ImageError
from .preprocess import MULTI_SCALE, PreprocessConfig, Tokens, preprocess


@dataclass
class Prepared:
    """One input after decoding and preprocessing: ``tokens`` or ``error`` is set.

    ``index``: its position in the input stream; ``source``: its name (see
    :func:`musiq.decode.source_name`).
    """

    index: int
    source: str
    tokens: Tokens | None = None
    error: str | None = None

    def __len__(self) -> int:
        return len(self.tokens) if self.tokens is not None else 0


@dataclass(frozen=True)
class Preprocessor:
    """Decoding and preprocessing settings, and the functions that apply them.

    ``config``: the original's preprocessing configuration (scales, patch size, native-token
    cap); ``max_pixels``: images above this many pixels are refused from their header (None:
    no limit); ``exif_transpose``: apply the EXIF orientation (the original does not).
    """

    config: PreprocessConfig = field(default=MULTI_SCALE)
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    exif_transpose: bool = False

    def __post_init__(self) -> None:
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ValueError(f"max_pixels must be positive or None, not {self.max_pixels}")

    def pixels(self, image: ImageInput) -> np.ndarray:
        """Decode any accepted input to ``(H, W, 3)`` uint8 RGB (raises :class:`ImageError`)."""
        return load_image(image, max_pixels=self.max_pixels, exif_transpose=self.exif_transpose)

    def tokens_of_pixels(self, rgb: np.ndarray, source: str = "<array>") -> Tokens:
        """Tokens of decoded ``(H, W, 3)`` uint8 pixels (raises :class:`ImageError`)."""
        return preprocess(rgb, self.config, source)

    def tokens(self, image: ImageInput) -> Tokens:
        """Decode and preprocess one input (raises :class:`ImageError`)."""
        return self.tokens_of_pixels(self.pixels(image), source_name(image))

    def prepare(self, index: int, image: ImageInput) -> Prepared:
        """Decode and preprocess one input; any failure becomes ``error`` (never raises)."""
        source = source_name(image)
        try:
            return Prepared(index, source, tokens=self.tokens(image))
        except ImageError as e:
            return Prepared(index, source, error=e.reason)
        except MemoryError:
            return Prepared(index, source, error="out of memory while decoding/preprocessing")
        except Exception as e:  # one odd file must not stop a run over thousands
            return Prepared(index, source, error=f"{type(e).__name__}: {e}")

    def with_config(self, **changes) -> "Preprocessor":
        """A copy with preprocessing settings changed (e.g. ``max_seq_len_from_original_res``)."""
        return replace(self, config=replace(self.config, **changes))
