"""``musiq evaluate``: how well a model agrees with labelled images.

Prints SRCC, PLCC (raw and after the 4-parameter logistic), KRCC, RMSE and n with bootstrap
95 % intervals (and EMD for a 10-class model on vote distributions). ``--format json`` prints
one JSON object (``n``, ``srcc``, ``plcc``, ``krcc``, ``rmse``, ...). Images that cannot be
scored are listed on stderr and left out; ``--strict`` makes them an error (exit code 1).

Several models (``--model koniq,spaq,ava``, ``--model koniq --model ava`` or ``all``): each
image is decoded once and every model scores it; the table has one row per model (the same
statistics and intervals each would have alone), ``--format json`` and ``--report`` give
``{"labels", "models": {NAME: that model's object}}`` and ``--plot`` one panel per model.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from tqdm import tqdm

from ..errors import MusiqError
from .common import add_model_options, load_from_args, load_several_from_args, model_specs
from .labels import add_label_options, columns_from_args
from .video_options import add_video_options, sampling_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="compare a model's scores with labels (SRCC, PLCC ...)",
                       description=__doc__.split("\n")[0])
    p.add_argument("--labels", "-l", required=True, metavar="FILE.csv",
                   help="label file (default columns: image, mos)")
    p.add_argument("--images", metavar="DIR",
                   help="folder the image names are relative to (default: the label file's)")
    p.add_argument("--format", "-f", choices=("table", "json"), default="table",
                   help="table (default) or json (one object)")
    p.add_argument("--plot", metavar="FILE.png", help="write a scatter plot with the fit")
    p.add_argument("--report", metavar="FILE.json",
                   help="write the full report, per-image predictions included")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the 95%% intervals (default 1000; 0 = none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--emd-r", type=float, default=1.0, metavar="R",
                   help="EMD exponent for distributions (default 1)")
    p.add_argument("--batch-size", "-b", type=int, default=8, metavar="N",
                   help="images per forward pass at most (default 8)")
    p.add_argument("--strict", action="store_true",
                   help="exit with code 1 when any labelled image could not be scored")
    add_label_options(p)
    add_video_options(p, per_frame=False)
    add_model_options(p, listed=True)
    p.set_defaults(func=run)


def _load(args: argparse.Namespace):
    """One :class:`Scorer` for one model (the output as before), else a MultiScorer (names
    checked before any checkpoint is read)."""
    specs = model_specs(args)
    if len(specs) == 1:
        return load_from_args(args, specs[0])
    return load_several_from_args(args, specs)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.core import evaluate, json_safe  # needs scipy: imported only when used
    from ..evaluation.labels import read_labels

    columns = columns_from_args(args)
    sampling = sampling_from_args(args)
    read_labels(args.labels, args.images, columns)  # a bad file fails before the model loads
    for option, path in (("--plot", args.plot), ("--report", args.report)):
        check_writable(option, path)  # before the scoring, so that no work is lost
    scorer = _load(args)
    bar = tqdm(total=0, unit="img", disable=not sys.stderr.isatty(), file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    result = evaluate(scorer, args.labels, args.images, columns=columns,
                      batch_size=args.batch_size, bootstrap=args.bootstrap, seed=args.seed,
                      emd_r=args.emd_r, plot=args.plot, report=args.report, progress=progress,
                      video=sampling)
    bar.close()
    d = result.to_dict()
    if args.format == "json":
        print(json.dumps(json_safe(d), indent=2))
    elif "models" in d:
        write_comparison(d, sys.stdout)
    else:
        write_table(d, sys.stdout)
    for name, failed in _failures(result):
        print(f"musiq evaluate: {name}{len(failed)} labelled image(s) could not be scored "
              "and were left out:", file=sys.stderr)
        for f in failed:
            print(f"  {f['path']} (line {f['line']}): {f['error']}", file=sys.stderr)
    return 1 if (args.strict and result.failed) else 0


def _failures(result) -> list[tuple[str, list[dict]]]:
    """``(prefix, failures)`` to list: the one model's, or each model's that has any."""
    if not hasattr(result, "results"):
        return [("", result.failed)] if result.failed else []
    return [(f"model {n}: ", e.failed) for n, e in result.results.items() if e.failed]


def check_writable(option: str, path: str | None) -> None:
    """Raise :class:`MusiqError` when ``path`` cannot be written (missing folder, a
    directory, no permission), without creating it."""
    if path is None:
        return
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise MusiqError(f"{option} {path}: folder {folder} does not exist")
    if os.path.isdir(path):
        raise MusiqError(f"{option} {path}: is a directory")
    if not os.access(path if os.path.exists(path) else folder, os.W_OK):
        raise MusiqError(f"{option} {path}: not writable")


def write_table(d: dict, out) -> None:
    ci = d.get("ci", {})
    conf = int(round(100 * d.get("confidence", 0.95)))
    out.write(f"model  {d['model']}\nlabels {d['labels']}\n")
    out.write(f"n      {d['n']} image(s)" + (f", {d['n_failed']} failed\n" if d["n_failed"]
                                              else "\n"))
    rows = [("SRCC", "srcc"), ("PLCC", "plcc"), ("PLCC (logistic)", "plcc_logistic"),
            ("KRCC", "krcc"), ("RMSE", "rmse"), ("RMSE (logistic)", "rmse_logistic")]
    if "emd" in d:
        rows.append((f"EMD (r={d['emd_r']:g})", "emd"))
    for title, key in rows:
        lo_hi = d.get("emd_ci") if key == "emd" else ci.get(key)
        interval = f"  [{lo_hi[0]:.4f}, {lo_hi[1]:.4f}] {conf}% CI" if lo_hi else ""
        out.write(f"{title:<16} {d[key]:.4f}{interval}\n")
    if d.get("plot"):
        out.write(f"plot   {d['plot']}\n")


COMPARED = (("SRCC", "srcc"), ("PLCC", "plcc"), ("PLCC (logistic)", "plcc_logistic"),
            ("KRCC", "krcc"), ("RMSE", "rmse"), ("RMSE (logistic)", "rmse_logistic"))


def write_comparison(d: dict, out) -> None:
    """Several models on the same labels: one row per model, each statistic with its
    bootstrap interval (as :func:`write_table` prints one model's)."""
    models = d["models"]
    first = next(iter(models.values()))
    conf = int(round(100 * first.get("confidence", 0.95)))
    columns = list(COMPARED)
    if any("emd" in m for m in models.values()):
        columns.append((f"EMD (r={first['emd_r']:g})", "emd"))
    table = [["model", "n", "failed"] + [title for title, _ in columns]]
    for name, m in models.items():
        cells = [name, str(m["n"]), str(m["n_failed"])]
        for _, key in columns:
            value = m.get(key)
            lo_hi = m.get("emd_ci") if key == "emd" else m.get("ci", {}).get(key)
            cells.append("-" if value is None else f"{value:.4f}" + (
                f" [{lo_hi[0]:.4f}, {lo_hi[1]:.4f}]" if lo_hi else ""))
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    out.write(f"labels {d['labels']}\n")
    for row in table:
        out.write("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                            for i, (c, w) in enumerate(zip(row, widths))).rstrip() + "\n")
    if any(m.get("ci") for m in models.values()):
        out.write(f"[low, high]: {conf}% bootstrap confidence intervals\n")
    if d.get("plot"):
        out.write(f"plot   {d['plot']}\n")
