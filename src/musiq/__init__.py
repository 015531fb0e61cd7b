"""musiq: the MUSIQ image quality transformer, exact to the original, in PyTorch.

    >>> import musiq
    >>> scorer = musiq.load("koniq")
    >>> scorer.score("photo.jpg")
"""
from typing import TYPE_CHECKING

from . import _aliases

_aliases.install()

# Light (NumPy only): imported now. ``preprocess`` must be: it is a submodule's name too.
from .network.architecture import OFFICIAL, Architecture  # noqa: E402
from .network.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from .errors import (CheckpointError, CheckpointNotFound, ImageError, MusiqError,  # noqa: E402
                     UnsupportedFormat)
from .network.outputs import KINDS, OutputKind, output_kind
from .tokens.preprocess import MULTI_SCALE, SINGLE_SCALE, PreprocessConfig, Tokens, preprocess
from .network.registry import REGISTRY, ModelInfo, get_info

if TYPE_CHECKING:  # what the lazy names below are, for type checkers and IDEs
    from .decoding.decode import load_image
    from .network.factory import ModelSource, create_model
    from .network.model import Musiq, PackedBatch
    from .tokens.preprocessor import Prepared, Preprocessor
    from .scorer import Prediction, Scorer, ScorerOptions, load

from ._version import __version__  # noqa: E402

#: Imported on first use: scoring never needs scipy or matplotlib, and ``musiq --help`` or
#: ``--version`` never imports torch (seconds).
_LAZY = {
    "load_image": ("decoding.decode", "load_image"),
    "ModelSource": ("network.factory", "ModelSource"),
    "create_model": ("network.factory", "create_model"),
    "Musiq": ("network.model", "Musiq"),
    "PackedBatch": ("tokens.packed", "PackedBatch"),
    "Prepared": ("tokens.preprocessor", "Prepared"),
    "Preprocessor": ("tokens.preprocessor", "Preprocessor"),
    "Prediction": ("scorer", "Prediction"),
    "Scorer": ("scorer", "Scorer"),
    "ScorerOptions": ("scorer", "ScorerOptions"),
    "load": ("scorer", "load"),
    "MultiScorer": ("multi_scorer", "MultiScorer"),
    "MultiPrediction": ("results.rows", "MultiPrediction"),
    "evaluate": ("evaluation", "evaluate"),
    "Evaluation": ("evaluation", "Evaluation"),
    "train": ("training", "train"),
    "Trainer": ("training", "Trainer"),
    "TrainConfig": ("training", "TrainConfig"),
    "TrainResult": ("training", "TrainResult"),
    "LabelColumns": ("evaluation.labels", "LabelColumns"),
    "read_labels": ("evaluation.labels", "read_labels"),
}


def __getattr__(name: str):
    if name == "Variant":  # the old name of Architecture
        import warnings
        warnings.warn("musiq.Variant is musiq.Architecture", DeprecationWarning, stacklevel=2)
        return Architecture
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Architecture", "OFFICIAL", "create_model", "ModelSource", "KINDS", "OutputKind",
    "output_kind", "Prepared", "Preprocessor", "ScorerOptions",
    "CheckpointError", "CheckpointNotFound", "ImageError", "MULTI_SCALE", "ModelInfo", "Musiq",
    "MusiqError", "PackedBatch", "Prediction", "PreprocessConfig", "REGISTRY", "SINGLE_SCALE",
    "Scorer", "Tokens", "UnsupportedFormat", "get_info", "load", "load_checkpoint",
    "load_image", "preprocess", "save_checkpoint", "__version__",
    "evaluate", "Evaluation", "train", "Trainer", "TrainConfig", "TrainResult", "LabelColumns",
    "read_labels", "MultiScorer", "MultiPrediction",
]
