"""The 1000 ILSVRC-2012 class names, by the standard class index (0-999)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_FILE = Path(__file__).with_name("data") / "imagenet_classes.txt"


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    """The 1000 names, index = class number of the ``imagenet`` checkpoint's logits."""
    return tuple(_FILE.read_text(encoding="utf-8").splitlines())


def class_name(index: int, num_classes: int = 1000) -> str | None:
    """Name of a class (None for a head that is not the 1000-class ImageNet one)."""
    if num_classes != 1000:
        return None
    names = class_names()
    return names[index] if 0 <= index < len(names) else None
