"""Error types. Every failure the package reports on purpose is a :class:`MusiqError`."""
from __future__ import annotations


class MusiqError(Exception):
    """Base class of all errors raised on purpose by musiq."""


class ImageError(MusiqError, ValueError):
    """An input image cannot be scored: empty, corrupt, not an image, too large or too thin.

    ``source`` names the file (or ``"<bytes>"``/``"<array>"``) and ``reason`` says why.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class UnsupportedFormat(ImageError):
    """The bytes are not an image format musiq reads (text, HEIC, PDF, ...)."""


class CheckpointError(MusiqError, ValueError):
    """A checkpoint file is missing, truncated, unsafe or not a MUSIQ checkpoint."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """No file for a named model was found in any of the searched places."""
