"""``musiq download NAME...``: fetch official checkpoints (resumable, validated, recorded)."""
from __future__ import annotations

import argparse
import sys

from ..network.download import download, download_dir, is_offline, read_record, url_for
from ..errors import CheckpointNotFound, MusiqError
from ..network.locate import find_checkpoint
from ..network.registry import REGISTRY, get_info


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "download", help="download official checkpoints",
        description="Download official checkpoints to --checkpoint-dir, $MUSIQ_CHECKPOINT_DIR "
                    "or the user cache. Interrupted downloads resume; a file is kept only "
                    "when complete and a valid checkpoint of the named model. "
                    "$MUSIQ_BASE_URL replaces the official bucket URL.")
    p.add_argument("names", nargs="+", metavar="NAME",
                   help=f"model names ({', '.join(REGISTRY)}) or 'all'")
    p.add_argument("--checkpoint-dir", metavar="DIR", help="where to put the files")
    p.add_argument("--force", action="store_true", help="download again even when present")
    p.add_argument("--offline", action="store_true", default=None,
                   help="do not download (also $MUSIQ_OFFLINE=1): only report what is present")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = list(REGISTRY) if "all" in args.names else args.names
    infos = [get_info(n) for n in names]  # unknown names fail before any download
    target = download_dir(args.checkpoint_dir)
    failed = 0
    for info in infos:
        dest = target / info.relpath
        if not args.force:
            # Present anywhere `musiq score` would find it (./musiq_original/checkpoints,
            # $MUSIQ_CHECKPOINT_DIR, the cache), unless a directory was named.
            try:
                found = dest if dest.is_file() else (
                    None if args.checkpoint_dir else find_checkpoint(info))
            except CheckpointNotFound:
                found = None
            if found is not None:
                print(f"{info.name}: already present: {found}")
                continue
        if is_offline(args.offline):
            print(f"{info.name}: missing ({dest}); offline, not downloading", file=sys.stderr)
            failed += 1
            continue
        print(f"{info.name}: downloading {url_for(info)}", file=sys.stderr)
        try:
            path = download(info, target, force=args.force, offline=False,
                            progress=False if args.quiet else None,
                            log=lambda m: print(f"  {m}", file=sys.stderr))
        except MusiqError as e:
            print(f"{info.name}: error: {e}", file=sys.stderr)
            failed += 1
            continue
        rec = read_record(path) or {}
        print(f"{info.name}: {path} ({rec.get('size', 0):,} bytes, "
              f"sha256 {rec.get('sha256', '?')})")
    return 1 if failed else 0
