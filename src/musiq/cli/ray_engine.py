"""``musiq score --engine ray``: the same run on Ray Data (see :mod:`musiq.distributed`).

Without ``--ray-address`` a local Ray is started for the run and shut down at its end; with
one, the driver joins that cluster (``auto``, ``HOST:PORT`` or ``ray://HOST:10001``) and
leaves it running. Results come back to this process as they finish and go through the
CLI's writers, so every output format, the progress bar and ``--resume`` work as locally.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from typing import Iterator

from ..errors import MusiqError
from ..multi_scorer import MultiScorer
from ..results.rows import MultiPrediction
from ..scorer import Prediction, Scorer

def ray_predictions(scorer: Scorer | MultiScorer, files: list[str], args: argparse.Namespace
                    ) -> Iterator[Prediction] | Iterator[MultiPrediction]:
    """Predictions of ``files`` scored on Ray (any order; each file exactly once): one
    :class:`Prediction` per file for a :class:`Scorer`, one :class:`MultiPrediction` (every
    model's prediction, in the models' order) for a :class:`MultiScorer`, whose models
    share the first model's options (the command line's)."""
    from .. import distributed
    ray = distributed._ray()
    started = False
    if not ray.is_initialized():
        # The driver's own stdout carries results: Ray's worker logs and bars stay off it.
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
        quiet = quiet_ray_logs(local=not args.ray_address)
        kw = dict(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        with _native_stderr(capture=quiet) as native:
            try:
                if args.ray_address:
                    ray.init(address=args.ray_address, **kw)
                else:
                    ray.init(num_cpus=args.ray_cpus, **kw)
                    started = True
            except Exception as e:
                where = args.ray_address or "a local Ray"
                said = native.text() if native else ""
                raise MusiqError(f"cannot start or join {where}: {str(e).splitlines()[0]}"
                                 + (f"\n{said}" if said else "")) from None
    _quiet_ray_data()
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        several = isinstance(scorer, MultiScorer)
        # Every scoring option the command line set, checked once (the same for every model).
        options = (scorer.lead if several else scorer).options
        ds = distributed.score_dataset(
            files, scorer, concurrency=args.ray_actors, num_gpus=args.ray_gpus,
            num_cpus=args.ray_actor_cpus, batch_size=4 * args.batch_size,
            model_batch_size=args.batch_size, threads=args.threads, options=options,
            recursive=getattr(args, "recursive", False))
        from ..results.several_arrow import table_rows as rows
        try:
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                yield from rows(batch)
        except MusiqError:
            raise
        except Exception as e:  # Ray's own failures (an actor that died ...): one line
            # The rows already yielded are written; the run ends with a clear error.
            raise MusiqError(f"the Ray engine failed: {_first_line(e)}") from None
    finally:
        if started:
            ray.shutdown()


def quiet_ray_logs(local: bool) -> bool:
    """Keep a successful run's stderr to musiq's own lines. For the local Ray started for the
    run, Ray's notice that it turned token authentication on (it stays on) is dropped; the
    driver's C++ core worker logs only fatal errors (it logs an error-level line about actor
    restarts on every run; failures reach musiq as exceptions). Returns False when the user
    set ``RAY_BACKEND_LOG_LEVEL`` (then Ray's native lines are shown as Ray prints them)."""
    if local:
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR)
    if "RAY_BACKEND_LOG_LEVEL" in os.environ:
        return False
    os.environ["RAY_BACKEND_LOG_LEVEL"] = "fatal"
    return True


class _Captured:
    def __init__(self, file) -> None:
        self.file = file

    def text(self, limit: int = 2000) -> str:
        self.file.seek(0)
        return self.file.read().decode("utf-8", "replace").strip()[-limit:]


@contextlib.contextmanager
def _native_stderr(capture: bool) -> Iterator["_Captured | None"]:
    """While Ray starts, what is written to file descriptor 2 (Ray's C++ line saying which log
    level it read from the environment; Python's ``sys.stderr`` too) goes to a temporary
    file, shown only when the start fails."""
    if not capture:
        yield None
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            yield _Captured(f)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _quiet_ray_data() -> None:
    """Ray Data's console lines (execution plan, 'progress bars disabled') go; its log file
    in the Ray session folder keeps them."""
    data = logging.getLogger("ray.data")
    for handler in data.handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(max(handler.level, logging.WARNING))
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def add_ray_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ray engine (--engine ray; the ray extra)")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (default): this process; ray: Ray Data tasks and actors")
    g.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="join this Ray cluster (auto, HOST:PORT, ray://HOST:10001); "
                        "default: start a local Ray for the run")
    g.add_argument("--ray-actors", type=int, default=1, metavar="N",
                   help="model actors (replicas) in the pool (default 1)")
    g.add_argument("--ray-gpus", type=float, default=0, metavar="G",
                   help="GPUs per model actor; fractions share a GPU (default 0)")
    g.add_argument("--ray-actor-cpus", type=float, default=1, metavar="C",
                   help="CPUs reserved per model actor (default 1)")
    g.add_argument("--ray-cpus", type=int, default=None, metavar="N",
                   help="CPUs of the local Ray started without --ray-address (default: all)")


def _first_line(e: BaseException) -> str:
    """The most specific line of a Ray error (its cause's message when it wraps one)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    named = [ln for ln in lines if "Error:" in ln and not ln.startswith("File ")]
    return (named[-1] if named else lines[0] if lines else type(e).__name__)[:500]
