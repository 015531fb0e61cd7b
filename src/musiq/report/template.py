"""Fill the page template safely: data embedded in a ``<script>`` element, substitution once.

Data (file names, error messages, provenance) is never scanned for markers again: the
template is split at its ``{{NAME}}`` markers once and the values joined in, so a file named
``a{{JS}}.jpg`` stays a name. JSON inside ``<script type="application/json">`` has ``<``,
``>``, ``&`` and U+2028/U+2029 escaped as ``\\uXXXX`` (still the same JSON to a parser), so no
name can close the element or open a comment (``<!--<script>`` would keep it open).
"""
from __future__ import annotations

import json
import re
from typing import IO, Iterable, Mapping

MARKER = re.compile(r"\{\{([A-Z]+)\}\}")
_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
           "\u2029": "\\u2029"}
_UNSAFE_RE = re.compile("[<>&\u2028\u2029]")


def script_json(value: object) -> str:
    """``value`` as JSON that can sit inside a ``<script>`` element (NaN refused)."""
    text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    return _UNSAFE_RE.sub(lambda m: _UNSAFE[m.group()], text)


def pieces(template: str, values: Mapping[str, str | Iterable[str]]) -> Iterable[str]:
    """The template's text with each ``{{NAME}}`` replaced by ``values[NAME]`` (a string or
    an iterable of strings, written in order), each marker of the template substituted once;
    markers inside the values are left as they are."""
    parts = MARKER.split(template)
    for i, part in enumerate(parts):
        if i % 2 == 0:
            yield part
            continue
        value = values[part]  # a marker the code does not fill is a bug: KeyError
        if isinstance(value, str):
            yield value
        else:
            yield from value


def render(template: str, values: Mapping[str, str | Iterable[str]]) -> str:
    """:func:`pieces` joined into one string."""
    return "".join(pieces(template, values))


def write_pieces(f: IO[str], template: str, values: Mapping[str, str | Iterable[str]]) -> None:
    """:func:`pieces` written to ``f`` one by one (the page is never held whole)."""
    for text in pieces(template, values):
        f.write(text)
