"""``musiq score``: score image files, folders and globs; table, CSV, JSON or JSON lines.

JSON contract: an array with one object per input holding ``path``, ``score`` (null on
failure), ``error`` (null on success), plus ``distribution``/``std`` (AVA) or ``top5``
(ImageNet) where they apply. The seed's form ``musiq score --image X --model M`` prints
``MUSIQ score: <value>``. The exit code is 1 when any image failed.

Large runs: ``--output results.csv|.jsonl`` appends a flushed row per image as it finishes,
``--resume`` skips the images already in that file, ``--workers`` decodes and preprocesses in
parallel processes, and images of mixed sizes are batched by length.

Several models (``--model koniq,ava``, ``--model koniq --model ava``, ``--model all``): each
image is decoded once and every model scores it; the outputs hold a score per model
(docs/several-models.md), and an image counts as failed when any model failed on it.

Provenance: ``--output OUT`` also writes ``OUT.meta.json`` (model, checkpoint SHA-256, musiq
version, precision, preprocessing; :mod:`musiq.results.provenance`); ``--resume`` refuses, leaving
the file untouched, an output made with another checkpoint, precision or preprocessing.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

from ..errors import MusiqError
from ..engine.plan import PRECISIONS
from ..scorer import Prediction
from ..results.rows import MultiPrediction
from ..video_scoring import predict_files
from .common import add_model_options, load_from_args, load_several_from_args, model_specs
from .inputs import IMAGE_SUFFIXES, collect, read_list, resolved  # noqa: F401  (API)
from .output import (make_several_writer, make_writer, model_set, open_output,
                     prepare_output, stop_on_sigterm)
from .progress import track
from .ray_engine import add_ray_options, ray_predictions
from .video_options import add_video_options, sampling_from_args

MAX_LISTED_FAILURES = 20


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score images", description=__doc__.split("\n")[0])
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files, folders or globs (quote globs; '**' matches subfolders)")
    p.add_argument("--image", "-i", action="append", default=[], metavar="IMAGE",
                   help="an image (repeatable); the original tool's form")
    p.add_argument("--files-from", metavar="FILE",
                   help="read image paths from FILE, one a line ('-' = standard input)")
    p.add_argument("--recursive", "-r", action="store_true",
                   help="folders: include images in subfolders")
    p.add_argument("--format", "-f", choices=("table", "json", "csv", "jsonl"),
                   help="standard output format (default: table; 'MUSIQ score: X' for --image;"
                        " nothing when --output is given)")
    p.add_argument("--output", "-o", metavar="FILE.csv|FILE.jsonl|FILE.parquet",
                   help="append one flushed row per image to this file as results arrive "
                        "(.parquet: row groups, the file is complete when the run ends)")
    p.add_argument("--resume", action="store_true",
                   help="with --output: skip images already in the file (scored or failed; "
                        "paths are compared resolved)")
    p.add_argument("--retry-failed", action="store_true",
                   help="with --resume: score the images whose rows failed again (their "
                        "old rows are replaced)")
    p.add_argument("--overwrite", action="store_true",
                   help="with --output: replace an existing file")
    g = p.add_argument_group("speed")
    g.add_argument("--batch-size", "-b", type=int, default=8, metavar="N",
                   help="images per forward pass at most (default 8)")
    g.add_argument("--max-batch-tokens", type=int, default=None, metavar="N",
                   help="padded tokens per forward pass at most; bounds memory (default 1024 "
                        "on CPU, 65536 on CUDA; a larger image runs alone)")
    g.add_argument("--workers", "-j", type=int, default=None, metavar="N",
                   help="processes that decode and preprocess ahead of the model (default: "
                        "0 on CPU, min(8, cores - 1) on CUDA)")
    g.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                   help="fp32 (default, exact) or bf16/fp16: faster on CPUs with bf16 "
                        "instructions (fp32 elsewhere, said once), scores move slightly; the "
                        "head and the score stay fp32 (docs/performance.md)")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the patch stem (experimental: costs a compile of tens "
                        "of seconds and was slower end to end in our measurements; "
                        "docs/performance.md; needs a working Triton/C++ toolchain)")
    g.add_argument("--backend", choices=("auto", "torch", "openvino", "onnxruntime"),
                   default=None,
                   help="what runs the model: auto (default, or $MUSIQ_BACKEND: openvino on "
                        "CPU, torch on CUDA or where openvino cannot run), torch, openvino (CPU fp32/bf16; "
                        "converts the model once to a cache) or onnxruntime (CPU fp32, needs "
                        "the onnx extra); same fp32 scores within float32 rounding "
                        "(docs/performance.md)")
    g.add_argument("--preprocess", choices=("auto", "numpy", "torch"), default="auto",
                   help="where tokens are made: numpy (host, in the decode workers) or torch "
                        "(on the scoring device, from decoded pixels); same tokens either "
                        "way (default auto: torch on CUDA, numpy on CPU)")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for the model (default: the runtime's, one per core)")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bar and no summary (errors still go to stderr)")
    add_video_options(p)
    add_model_options(p, listed=True)
    add_ray_options(p)
    p.set_defaults(func=run)




def _models(args: argparse.Namespace) -> None:
    """Read ``--model`` (names checked before any work): one model sets ``args.model`` as
    before; several set ``args.models``; refuse what several models cannot do yet."""
    specs = model_specs(args)
    args.models = specs if len(specs) > 1 else None
    args.model = specs[0]
    if args.models is None:
        return
    if getattr(args, "per_frame", False):
        raise MusiqError("--per-frame scores one model at a time: give one --model (with "
                         "several, each video's frames are in the JSON rows' frame_scores)")


def run(args: argparse.Namespace) -> int:
    _models(args)
    raw = list(args.images) + list(args.image)
    if args.files_from:
        raw += read_list(args.files_from)
    found = collect(raw, recursive=args.recursive, uris=args.engine == "ray")
    files = found.files
    problems = [Prediction(source=path, error=reason) for path, reason in found.problems]
    args.skipped_note = found.skipped_summary()  # said in the summary
    if not files and not problems:
        hint = "; ".join(found.hints + [args.skipped_note] * bool(args.skipped_note)) or (
            "musiq score IMAGE... --model NAME|PATH")
        print(f"musiq score: no images given ({hint})", file=sys.stderr)
        return 2
    if args.resume and not args.output:
        raise MusiqError("--resume needs --output FILE")
    if args.retry_failed and not args.resume:
        raise MusiqError("--retry-failed needs --resume")
    if args.batch_size < 1 or (args.max_batch_tokens is not None and args.max_batch_tokens < 1):
        raise MusiqError("--batch-size and --max-batch-tokens must be positive")
    args.sampling = sampling_from_args(args)
    # The output is checked (folder, lock, rows) before the model loads: no lost work.
    stop_on_sigterm()
    output = open_output(args.output, resume=args.resume, overwrite=args.overwrite) \
        if args.output else None
    try:
        return _score(args, files, problems, output)
    finally:
        if output is not None:
            output.close()


def _stdout_writer(args: argparse.Namespace, scorer, files: list[str], problems: list):
    """The writer of standard output (None when ``--output`` is given without
    ``--format``)."""
    fmt = args.format or (None if args.output else
                          "seed" if args.image and not args.images else "table")
    if not fmt:
        return None
    width = max((len(f) for f in files), default=4)
    several = len(files) + len(problems) > 1
    models = model_set(scorer)
    if models is not None:
        ranges = {n: s.score_range for n, s in scorer.scorers.items()}
        return make_several_writer(fmt, sys.stdout, models, width=width, several=several,
                                   ranges=ranges)
    return make_writer(fmt, sys.stdout, kind=scorer.kind, width=width, several=several,
                       model=scorer.name, score_range=scorer.score_range,
                       per_frame=args.per_frame)


def _predictions(args: argparse.Namespace, scorer, files: list[str]):
    """The rows of ``files`` from the engine asked for (one model's or several's)."""
    if args.engine == "ray":
        return ray_predictions(scorer, files, args)
    if args.models:
        return scorer.predict_files(files, args.sampling, batch_size=args.batch_size)
    return predict_files(scorer, files, args.sampling, batch_size=args.batch_size)


def _failure(p) -> str | None:
    """What a row's failure says: one model's error, or several's one-line summary."""
    return getattr(p, "failure", p.error)


def _score(args: argparse.Namespace, files: list[str], problems: list[Prediction],
           output) -> int:
    scorer = load_several_from_args(args, args.models) if args.models else \
        load_from_args(args)
    scorer.plan.apply_threads()
    if args.models:
        problems = [MultiPrediction.failed(p.source, scorer.names, p.error or "")
                    for p in problems]

    writers = []
    skipped = 0
    if output is not None:
        prepared = prepare_output(output, scorer, args, files, problems)
        files, problems, skipped = prepared.files, prepared.problems, prepared.skipped
        writers.append(prepared.writer)
    stdout = _stdout_writer(args, scorer, files, problems)
    if stdout is not None:
        writers.append(stdout)

    show = sys.stderr.isatty() and not args.quiet and len(files) > 1
    lines = not args.quiet and len(files) > 1  # progress lines when stderr is no terminal
    failed: list[Prediction] = []
    n_failed = scored = 0
    start = time.perf_counter()
    try:
        preds = _predictions(args, scorer, files)
        for p in itertools.chain(problems, track(preds, len(files), bar=show, lines=lines)):
            for w in writers:
                w.write(p)
            if p.ok:
                scored += 1
            else:
                n_failed += 1
                if len(failed) < MAX_LISTED_FAILURES:
                    failed.append(p)
    finally:
        for w in writers:
            w.close()
    elapsed = time.perf_counter() - start
    if not args.quiet and (len(files) > 1 or skipped):
        rate = scored / elapsed if elapsed > 0 else 0.0
        note = f", {skipped} skipped (already in {args.output})" if skipped else ""
        print(f"musiq score: {scored} scored, {n_failed} failed{note} in {elapsed:.1f} s "
              f"({rate:.2f} images/s)", file=sys.stderr)
    if not args.quiet and getattr(args, "skipped_note", None):
        print(f"musiq score: {args.skipped_note}", file=sys.stderr)
    if n_failed:
        total = scored + n_failed
        print(f"musiq score: {n_failed} of {total} image(s) failed", file=sys.stderr)
        for p in failed:
            print(f"  {p.source}: {_failure(p)}", file=sys.stderr)
        if n_failed > len(failed):
            where = f" (all are in {args.output})" if args.output else ""
            print(f"  ... and {n_failed - len(failed)} more{where}", file=sys.stderr)
    return 1 if n_failed else 0
