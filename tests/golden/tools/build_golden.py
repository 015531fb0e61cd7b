#!/usr/bin/env python3
"""Build tests/golden/ from the original's full reference outputs (a folder laid out as
``golden/``: images/, tokens/, intermediates/, scores.json, manifest*.txt).

The full folder is 66 MB; the repository keeps what the tests need in ~5 MB:

* the images, ``scores.json`` (the original's scores and logits) and the manifests as they are;
* ``tokens.json``: per image the shape and SHA-256 of the original's ``(T, 3075)`` float32
  token array (C order), which our tokens must match bit for bit;
* ``intermediates/<image>__1class.npz``: the original's module outputs for one image, trimmed
  to the CLS row and 16 token rows spread over the sequence (every block still depends on
  every token through attention) and to the stem maps of the first 2 patches.

    python tests/golden/tools/build_golden.py FULL_SET_DIR tests/golden
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

KEEP_ROWS = 16
KEEP_PATCHES = 2


def token_digest(tokens: np.ndarray) -> dict:
    a = np.ascontiguousarray(tokens, dtype=np.float32)
    return {"shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest()}


def trim_intermediates(src: Path, tokens: np.ndarray) -> dict[str, np.ndarray]:
    z = np.load(src)
    valid = np.nonzero(tokens[:, -1] == 1)[0]
    token_rows = np.unique(np.linspace(0, len(valid) - 1, KEEP_ROWS).round().astype(int))
    keep_valid = valid[token_rows]           # slots (without CLS) of the kept tokens
    seq_rows = np.concatenate([[0], keep_valid + 1])  # rows of the CLS-first sequence
    out = {"_valid": valid, "_token_rows": token_rows, "_seq_rows": seq_rows}
    for k in z.files:
        a = z[k]
        if k == "_input":                   # the tokens: checked by their digest
            continue
        if a.ndim == 4 and a.shape[0] > 1:   # stem maps (patches, H, W, C)
            out[k] = a[:KEEP_PATCHES]
        elif k in ("embedding", "Transformer__posembed_input", "Transformer__scaleembed_input"):
            out[k] = a[:, keep_valid]
        elif k.startswith("Transformer__"):
            out[k] = a[:, seq_rows]
        else:                                # pre_logits, head, model, _logits
            out[k] = a
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("source", type=Path)
    p.add_argument("dest", type=Path)
    a = p.parse_args()
    src, dest = a.source, a.dest
    (dest / "images").mkdir(parents=True, exist_ok=True)
    for f in sorted((src / "images").iterdir()):
        shutil.copyfile(f, dest / "images" / f.name)
    for name in ("scores.json", "manifest.txt", "manifest_10class.txt"):
        shutil.copyfile(src / name, dest / name)
    digests = {f.stem: token_digest(np.load(f)["tokens"])
               for f in sorted((src / "tokens").glob("*.npz"))}
    (dest / "tokens.json").write_text(json.dumps(digests, indent=1) + "\n")
    (dest / "intermediates").mkdir(exist_ok=True)
    for f in sorted((src / "intermediates").glob("*.npz")):
        image = f.stem.split("__")[0]
        tokens = np.load(src / "tokens" / f"{image}.npz")["tokens"]
        np.savez_compressed(dest / "intermediates" / f.name, **trim_intermediates(f, tokens))


if __name__ == "__main__":
    main()
