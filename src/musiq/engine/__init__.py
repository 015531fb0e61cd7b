"""The engine: one plan of every choice a run makes, and the forward passes it runs.

:mod:`.plan` resolves :class:`ScorerOptions` against the network and the machine into a
:class:`Plan`; :mod:`.runtime` holds the :class:`Engine` (packed tokens -> logits, torch or
ONNX Runtime); :mod:`.stream` runs a stream of prepared images through it in packed passes.
"""
from .plan import PRECISIONS, RUNTIMES, Plan, ScorerOptions, make_plan, resolve_device
from .runtime import Engine, Failure

__all__ = ["PRECISIONS", "RUNTIMES", "Engine", "Failure", "Plan", "ScorerOptions",
           "make_plan", "resolve_device"]
