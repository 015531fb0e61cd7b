"""Old module paths keep working: ``import musiq.decoding.decode`` is ``musiq.decoding.decode``.

The modules were grouped into subpackages (decoding, tokens, network, engine, results,
evaluation) so that the folders show the flow; code written against the flat names of
earlier releases imports the same module objects through this finder (patching one patches
the other).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: Flat module name -> its home now.
MOVED = {
    "decode": "decoding.decode", "sniff": "decoding.sniff", "files": "decoding.files",
    "preprocess": "tokens.preprocess", "preprocess_torch": "tokens.preprocess_torch",
    "preprocessor": "tokens.preprocessor", "packed": "tokens.packed",
    "pipeline": "tokens.pipeline", "shm": "tokens.shm", "watchdog": "tokens.watchdog",
    "architecture": "network.architecture", "model": "network.model",
    "checkpoint": "network.checkpoint", "registry": "network.registry",
    "locate": "network.locate", "download": "network.download",
    "factory": "network.factory", "outputs": "network.outputs",
    "imagenet": "network.imagenet",
    "batching": "engine.batching", "staging": "engine.staging", "backend": "engine.runtimes",
    "export": "engine.export",
    "tables": "results.tables", "provenance": "results.provenance",
    "labels": "evaluation.labels", "metrics": "evaluation.metrics",
    "plot": "evaluation.plot",
    # flat during this round's work, before the regrouping:
    "memory": "engine.memory", "runtime_openvino": "engine.openvino",
    "runtime_cache": "engine.runtime_cache", "reading": "decoding.reading",
    "transfer": "network.transfer", "jpeg": "decoding.jpeg",
    "limits": "decoding.limits",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        parts = name.split(".")
        if len(parts) == 2 and parts[0] == "musiq" and parts[1] in MOVED:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return importlib.import_module("musiq." + MOVED[spec.name.split(".")[1]])

    def exec_module(self, module) -> None:
        pass


def install() -> None:
    """Add the finder once, after the ordinary ones (real modules always win)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
