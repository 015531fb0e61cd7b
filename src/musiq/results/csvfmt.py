"""CSV records exactly as :mod:`csv` writes them, read back with the one rule a crash allows.

A record ends at a newline outside quotes (a quoted file name may hold newlines). Only the
*final* record may lack its newline: that is a row a crash cut short, and it is left out.
Anything else that does not parse as a row (a record with the wrong number of cells, a quote
that never closes before more rows) is refused: no guess ever drops rows that were written.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from ..errors import MusiqError

#: Largest CSV cell read (characters). ``csv``'s default (131,072) is below what musiq itself
#: writes for a long ``--files-from`` line; 64 Mi characters bounds memory all the same.
FIELD_LIMIT = 1 << 26


def render_row(values: list) -> str:
    """One CSV record (``\\n``-terminated, quoted where needed)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


@dataclass
class Record:
    """One whole record: its cells and its exact text (newline included)."""

    cells: list[str]
    text: str


@dataclass
class CsvText:
    """A CSV file's whole records; ``kept``: characters they cover (``< len(text)`` when the
    final record was cut by a crash)."""

    header: list[str] | None
    records: list[Record] = field(default_factory=list)
    kept: int = 0


class _Lines:
    """The lines of a text, counting the characters handed to the CSV reader."""

    def __init__(self, text: str) -> None:
        self.lines = iter(io.StringIO(text, newline=""))
        self.used = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.used += len(line)
        return line


def _records(text: str, where: str) -> list[tuple[list[str], str]]:
    if csv.field_size_limit() < FIELD_LIMIT:
        csv.field_size_limit(FIELD_LIMIT)
    lines, out, start = _Lines(text), [], 0
    reader = csv.reader(lines)
    try:
        for cells in reader:
            out.append((cells, text[start:lines.used]))
            start = lines.used
    except csv.Error as e:
        raise MusiqError(f"{where}: not a readable CSV file near line {reader.line_num} ({e}; "
                         f"cells hold at most {FIELD_LIMIT} characters)") from None
    return out


def _looks_like_rows(tail: str, width: int) -> bool:
    """Does a cut-looking tail hold more than one record's worth of rows (lines that parse as
    whole rows of ``width`` cells)? Then the opening quote was a stray one, not a cut name."""
    for line in tail.split("\n")[1:]:
        cells = next(csv.reader([line]), [])
        if len(cells) == width:
            return True
    return False


def parse_csv(text: str, where: str, *, keep_whole_last: bool = False) -> CsvText:
    """Split ``text`` into the header and whole records (see the module's rule). Raises
    :class:`MusiqError` naming ``where`` for a file that is not whole rows of the header's
    width, and for a cut final record that would hide other rows. ``keep_whole_last``
    (reading, not resuming): a final record without its newline is kept when its quotes are
    closed and it has the header's width."""
    records = _records(text, where)
    if not records:
        return CsvText(None)
    cut = not records[-1][1].endswith(("\n", "\r"))
    if cut and keep_whole_last and len(records) > 1 and \
            len(records[-1][0]) == len(records[0][0]) and records[-1][1].count('"') % 2 == 0:
        cut = False
    if cut:
        tail = records.pop()[1]
        width = len(records[0][0]) if records else 0
        if "\n" in tail and _looks_like_rows(tail, width):
            raise MusiqError(f"{where}: a quote opened near the end of the file never closes "
                             "and the rows after it would be lost; the file is left untouched "
                             "(fix or remove that row)")
    if not records:
        return CsvText(None, kept=0)
    header = records[0][0]
    body = []
    for n, (cells, rec) in enumerate(records[1:], 2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise MusiqError(f"{where}: record {n} has {len(cells)} cells, expected "
                             f"{len(header)} ({rec.strip()[:80]!r}); the file is left "
                             "untouched")
        body.append(Record(cells, rec))
    return CsvText(header, body, sum(len(r) for _, r in records))
