"""Fine-tuning MUSIQ: :class:`TrainConfig`, :class:`Trainer`, :func:`train`.

The trainer (and scipy, which it needs) is imported on first use, so the configuration can
be read without them.
"""
from .config import TrainConfig

__all__ = ["TrainConfig", "TrainResult", "Trainer", "train"]


def __getattr__(name: str):
    if name in ("TrainResult", "Trainer", "train"):
        from . import trainer
        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
