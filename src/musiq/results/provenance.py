"""What made an output: model, checkpoint SHA-256, musiq version, precision, preprocessing.

Every result file records its provenance so scores from different checkpoints or settings
are never mixed without a trace:

* CSV and JSON lines: a sidecar ``OUT.meta.json`` next to ``OUT`` (the data file itself stays
  plain, so every CSV/JSONL reader keeps working);
* Parquet: the same object as JSON under the schema metadata key ``musiq``.

``--resume`` compares the settings that change scores (:data:`SCORE_FIELDS`) and refuses to
append to a file written with other ones.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..network.checkpoint import file_sha256  # noqa: F401  (this module's name for it too)
from ..errors import MusiqError

#: Fields whose difference makes two runs' scores incomparable.
SCORE_FIELDS = ("checkpoint_sha256", "precision", "preprocessing")
SIDECAR_SUFFIX = ".meta.json"
PARQUET_KEY = b"musiq"

def describe(scorer: Any) -> dict:
    """Provenance of a :class:`musiq.Scorer`'s outputs (a JSON-ready dict).

    ``score_range`` is ``[low, high]`` in the model's units (None for ImageNet);
    ``preprocessing`` holds the resized scales (px, longer side), patch size (px), hashed grid,
    native token cap (-1 = none), pixel limit and EXIF handling.
    """
    from .._version import __version__

    cfg = scorer.preprocess_config
    rng = scorer.score_range
    return {
        "musiq_version": __version__,
        "model": scorer.name,
        "kind": scorer.kind,
        "num_classes": scorer.variant.num_classes,
        "score_range": list(rng) if rng is not None else None,
        "checkpoint": str(scorer.path) if scorer.path else None,
        "checkpoint_sha256": file_sha256(scorer.path) if scorer.path else None,
        "precision": scorer.precision,
        "preprocessing": {
            "longer_side_lengths": list(cfg.longer_side_lengths),
            "patch_size": cfg.patch_size,
            "hse_grid_size": cfg.hse_grid_size,
            "max_seq_len_from_original_res": cfg.max_seq_len_from_original_res,
            "max_pixels": scorer.max_pixels,
            "exif_transpose": bool(scorer.exif_transpose),
        },
    }


def sidecar_path(output: str | os.PathLike) -> Path:
    """``OUT.meta.json`` for an output file ``OUT``."""
    return Path(os.fspath(output) + SIDECAR_SUFFIX)


def write_sidecar(output: str | os.PathLike, provenance: dict) -> Path:
    """Write ``OUT.meta.json`` atomically (never through a link planted at its temporary
    name) and return its path."""
    from ..atomic import atomic_write
    path = sidecar_path(output)
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(provenance, indent=2) + "\n")
    return path


def _checked(data: object, where: str) -> dict:
    """``data`` if it is a provenance record a reader can use, else :class:`MusiqError`."""
    if not isinstance(data, dict):
        raise MusiqError(f"{where}: the provenance record is not a JSON object")
    rng = data.get("score_range")
    if rng is not None and not (isinstance(rng, list) and len(rng) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng)):
        raise MusiqError(f"{where}: the provenance record's score_range is not [low, high] "
                         f"(it is {json.dumps(rng)[:80]})")
    return data


def _parquet_record(output: Path) -> dict | None:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    try:
        meta = pq.read_schema(output).metadata or {}
    except Exception as e:  # pyarrow raises many kinds for a file that is not Parquet
        raise MusiqError(f"{output}: not a readable Parquet file ({str(e)[:200]})") from None
    raw = meta.get(PARQUET_KEY)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise MusiqError(f"{output}: the '{PARQUET_KEY.decode()}' metadata is not JSON "
                         f"({e})") from None
    return _checked(data, f"{output} ('{PARQUET_KEY.decode()}' metadata)")


def read_provenance(output: str | os.PathLike) -> dict | None:
    """The provenance recorded for an output file, or None when it has none.

    Reads the Parquet schema metadata for ``.parquet`` files (needs pyarrow; the sidecar when
    the file is not there yet), else the sidecar. Raises :class:`MusiqError` naming the file
    when the record exists but cannot be read or is not a record.
    """
    output = Path(output)
    if output.suffix.lower() == ".parquet" and output.is_file():
        return _parquet_record(output)
    path = sidecar_path(output)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise MusiqError(f"{path}: cannot read the provenance record ({e})") from None
    return _checked(data, str(path))


def mismatches(recorded: dict, current: dict) -> list[str]:
    """Human-readable differences in :data:`SCORE_FIELDS` (empty when compatible)."""
    out = []
    for key in SCORE_FIELDS:
        if recorded.get(key) != current.get(key):
            out.append(f"{key}: file has {json.dumps(recorded.get(key))}, "
                       f"this run has {json.dumps(current.get(key))}")
    return out


def check_resume(output: str | os.PathLike, current: dict) -> dict | None:
    """Raise :class:`MusiqError` if ``output`` was written with other scoring settings.

    Returns the recorded provenance (None for a file written before provenance existed, which
    cannot be checked).
    """
    recorded = read_provenance(output)
    if recorded is None:
        return None
    if "models" in recorded or "models" in current:
        _check_models(output, recorded, current)
        return recorded
    diff = mismatches(recorded, current)
    if diff:
        raise MusiqError(
            f"--resume: {output} was written by another model or settings "
            f"(model {recorded.get('model')!r}); its scores would be mixed with this run's. "
            f"Differences: {'; '.join(diff)}. The file is left untouched: use another "
            "--output, or --overwrite to replace it")
    return recorded


def _which(record: dict) -> str:
    """``models koniq, ava`` or ``model 'koniq'``: what a record was made with."""
    models = record.get("models")
    if isinstance(models, dict):
        return f"models {', '.join(map(str, models))}"
    return f"model {record.get('model')!r}"


def _check_models(output: str | os.PathLike, recorded: dict, current: dict) -> None:
    """Refuse a resume where the file's models (or one model's record against several's)
    differ from this run's, or where one of the same models has other settings."""
    had, has = recorded.get("models"), current.get("models")
    left = (f"The file is left untouched: use another --output, or --overwrite to replace "
            "it")
    if not (isinstance(had, dict) and isinstance(has, dict)) or set(had) != set(has):
        raise MusiqError(f"--resume: {output} was written with {_which(recorded)}; this run "
                         f"scores with {_which(current)}. {left}")
    diff = [f"{name}: {d}" for name in has
            for d in mismatches(had[name] if isinstance(had[name], dict) else {}, has[name])]
    if diff:
        raise MusiqError(f"--resume: {output} was written by other checkpoints or settings; "
                         f"its scores would be mixed with this run's. Differences: "
                         f"{'; '.join(diff)}. {left}")
