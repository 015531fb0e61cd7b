"""The CLI's input listing is :mod:`musiq.decoding.files` (every engine lists files alike);
this name is that same module."""
import sys

from ..decoding import files

sys.modules[__name__] = files
