"""Shared by the CI fuzz test (tests/test_fuzz.py, hypothesis) and the long run
(scripts/fuzz_decode.py): seeds, the mutation operators, and the one property checked.

A mutation is ``(op, where, value)``: ``where`` in [0, 1) is a position relative to the data
length, ``value`` an int in [0, 2**32). Operators are those that break parsers in practice:
bit flips, byte and 16/32-bit field overwrites with boundary values (sizes, lengths, counts),
truncation, deletion, duplication and insertion of slices.
"""
from __future__ import annotations

import numpy as np

from corpus import good_cases
from musiq.decoding.decode import decode_bytes
from musiq.errors import ImageError
from musiq.tokens.preprocess import preprocess

OPS = ("flip", "byte", "be16", "be32", "le16", "le32", "truncate", "delete", "duplicate",
       "insert")
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)
#: Pixel limit while fuzzing: keeps each input's worst case small; the limit check itself is
#: exercised by every mutated size field that exceeds it.
FUZZ_MAX_PIXELS = 1 << 22
#: Decoded images up to this size are also preprocessed.
PREPROCESS_PIXELS = 1 << 18


def seeds() -> list[tuple[str, bytes]]:
    """Small valid files of every supported kind (the thin giants are left out)."""
    return [(c.name, c.data) for c in good_cases() if len(c.data) < 200_000]


def mutate(data: bytes, ops: list[tuple[str, float, int]]) -> bytes:
    b = bytearray(data)
    for op, where, value in ops:
        n = len(b)
        if n == 0:
            b = bytearray(value.to_bytes(4, "big"))
            continue
        i = min(int(where * n), n - 1)
        if op == "flip":
            b[i] ^= 1 << (value % 8)
        elif op == "byte":
            b[i] = INTERESTING[value % len(INTERESTING)] & 0xFF if value & 1 else value % 256
        elif op in ("be16", "le16", "be32", "le32"):
            size = 2 if op.endswith("16") else 4
            v = INTERESTING[value % len(INTERESTING)] if value & 1 else value
            b[i:i + size] = (v % (1 << (8 * size))).to_bytes(size, "big" if op[:2] == "be"
                                                              else "little")
        elif op == "truncate":
            del b[i:]
        elif op == "delete":
            del b[i:i + 1 + value % 64]
        elif op == "duplicate":
            b[i:i] = b[i:i + 1 + value % 256]
        elif op == "insert":
            b[i:i] = np.random.default_rng(value).integers(0, 256, 1 + value % 32,
                                                           np.uint8).tobytes()
    return bytes(b)


def check_one(data: bytes) -> str:
    """The property: a valid image or an ImageError, nothing else. Returns the outcome."""
    try:
        rgb = decode_bytes(data, "<fuzz>", max_pixels=FUZZ_MAX_PIXELS)
    except ImageError as e:
        return "error: " + e.reason.split(" (")[0][:60]
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8, rgb.shape
    assert rgb.shape[0] * rgb.shape[1] <= FUZZ_MAX_PIXELS
    if rgb.shape[0] * rgb.shape[1] <= PREPROCESS_PIXELS:
        tok = preprocess(rgb, source="<fuzz>")
        assert len(tok) > 0 and np.isfinite(tok.patches).all()
    return "decoded"
