"""Learning-rate schedule: linear warm-up, then cosine decay to zero."""
from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based), in [0, 1].

    Rises linearly over ``warmup`` steps to 1 (first step ``1 / warmup``), then follows
    ``0.5 * (1 + cos(pi * t))`` with ``t`` going from 0 to 1 over the remaining steps.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    rest = max(total - warmup, 1)
    t = min(max(step - warmup, 0) / rest, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * t))
