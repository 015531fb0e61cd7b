"""``musiq models``: the official checkpoints, their ranges, and whether each file is found."""
from __future__ import annotations

import argparse
import json

from ..errors import CheckpointNotFound
from ..network.locate import find_checkpoint
from ..network.outputs import output_kind
from ..network.registry import ALIASES, REGISTRY


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the official models and where their files are")
    p.add_argument("--checkpoint-dir", metavar="DIR",
                   help="also look for the files here (default: $MUSIQ_CHECKPOINT_DIR, "
                        "./musiq_original/checkpoints, the one beside the installation and the "
                        "user cache)")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default) or json (one object per model)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    for info in REGISTRY.values():
        try:
            found = str(find_checkpoint(info, args.checkpoint_dir))
        except CheckpointNotFound:
            found = None
        # ImageNet's score is the top-1 probability: the kind's 0-1 (the registry has None).
        rng = info.score_range or output_kind(info.kind).score_range
        rows.append({"name": info.name, "file": info.relpath, "dataset": info.dataset,
                     "kind": info.kind, "range": list(rng) if rng else None,
                     "url": info.url, "found": found, "description": info.description,
                     "aliases": [a for a, n in ALIASES.items() if n == info.name]})
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<16} {'dataset':<10} {'range':<8} {'file':<45} found")
    for r in rows:
        rng = "-" if not r["range"] else f"{r['range'][0]:g}-{r['range'][1]:g}"
        print(f"{r['name']:<16} {r['dataset']:<10} {rng:<8} {r['file']:<45} "
              f"{r['found'] or 'no'}")
    return 0
