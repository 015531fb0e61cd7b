"""A Preprocessor whose decode process dies on inputs named ``*crash*`` (worker-crash tests)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from musiq.tokens.preprocessor import Preprocessor


@dataclass(frozen=True)
class CrashingPreprocessor(Preprocessor):
    def pixels(self, image):
        if "crash" in str(image):
            os._exit(3)  # as a worker killed for memory: no exception, no answer
        return super().pixels(image)
