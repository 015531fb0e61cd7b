"""``musiq score --engine ray``: the same run on Ray Data (see :mod:`musiq.distributed`).

Without ``--ray-address`` a local Ray is started for the run and shut down at its end; with
one, the driver joins that cluster (``auto``, ``HOST:PORT`` or ``ray://HOST:10001``) and
leaves it running. Results come back to this process as they finish and go through the
CLI's writers, so every output format, the progress bar and ``--resume`` work as locally.
"""
from __future__ import annotations

import argparse
import os
from typing import Iterator

from ..errors import MusiqError
from ..scorer import Prediction, Scorer


def ray_predictions(scorer: Scorer, files: list[str], args: argparse.Namespace
                    ) -> Iterator[Prediction]:
    """Predictions of ``files`` scored on Ray (any order; each file exactly once)."""
    from .. import distributed
    ray = distributed._ray()
    started = False
    if not ray.is_initialized():
        # The driver's own stdout carries results: Ray's worker logs and bars stay off it.
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
        kw = dict(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        try:
            if args.ray_address:
                ray.init(address=args.ray_address, **kw)
            else:
                ray.init(num_cpus=args.ray_cpus, **kw)
                started = True
        except Exception as e:
            where = args.ray_address or "a local Ray"
            raise MusiqError(f"cannot start or join {where}: {str(e).splitlines()[0]}") from None
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        options = scorer.options  # every scoring option the command line set, checked once
        ds = distributed.score_dataset(
            files, scorer, concurrency=args.ray_actors, num_gpus=args.ray_gpus,
            num_cpus=args.ray_actor_cpus, batch_size=4 * args.batch_size,
            model_batch_size=args.batch_size, threads=args.threads, options=options,
            recursive=getattr(args, "recursive", False))
        from ..tables import table_predictions
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            yield from table_predictions(batch)
    finally:
        if started:
            ray.shutdown()


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
