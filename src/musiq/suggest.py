"""'Did you mean ...?' for a mistyped name (a model, a command, a flag, a choice)."""
from __future__ import annotations

import difflib
from typing import Iterable


def close_match(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word`` (case-insensitive), or None when none is close."""
    options = list(dict.fromkeys(candidates))
    lowered = {c.lower(): c for c in options}
    found = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[found[0]] if found else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    match = close_match(word, candidates)
    return f" (did you mean '{match}'?)" if match and match != word else ""
