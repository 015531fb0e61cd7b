"""Several models on the Ray engine (issue 21): actors holding every model against one actor
pool per model fed the same decoded pixels, same run.

    .venv/bin/python benchmarks/bench_ray_multi.py [--images 16] [--size 512x384] [--rounds 3]

Generates N JPEGs (smooth synthetic photos, q90) and two structure-exact checkpoints (1 and 10
classes, multi-scale; random weights: speed does not depend on them), starts a local Ray with
2 CPUs once (not timed; actor start-up and weight transfer are) and alternates, each round:

- ``all-in-one, 1 actor``: the engine's design (musiq.distributed_multi): one actor holds both
  models, 1 Ray CPU, the machine's torch threads; tokens made once per image;
- ``all-in-one, 2 actors``: the same with two actors of 0.5 CPU and half the threads each;
- ``pool per model``: one pool per model, chained (decode -> model A's actor -> model B's
  actor), 0.5 CPU and half the threads each; pixels travel from pool to pool and each actor
  tokenises them itself (defined here: the engine does not keep it);
- ``separate runs``: two one-model runs (``score_dataset`` with each checkpoint), 1 actor.

Prints the median images/s of each and checks that all give the same scores. The machine
may be shared: quote the same-run ratios and the load average printed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: Images per Ray batch to an actor, per decode task (small: 16 images make several batches).
BATCH, DECODE_BATCH = 8, 4


def make_images(d: Path, n: int, w: int, h: int) -> list[str]:
    import simplejpeg
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = []
    for i in range(n):
        r = 127 + 120 * np.sin(x / (7.0 + i % 5)) * np.cos(y / 11.0)
        g = 127 + 120 * np.cos((x + y + 13 * i) / 13.0)
        b = 255 * (x / (w - 1)) * (1 - y / (h - 1))
        rgb = np.clip(np.stack([r, g, b], 2), 0, 255).astype(np.uint8)
        p = d / f"img_{i:03d}.jpg"
        p.write_bytes(simplejpeg.encode_jpeg(rgb, quality=90))
        out.append(str(p))
    return out


class OneModelActor:
    """Design (b): one model of several; adds its columns, passes the pixels on."""

    def __init__(self, payload, name: str, last: bool, schema_names: list[str],
                 threads: int) -> None:
        import ray
        from dataclasses import replace
        payload = ray.get(payload) if isinstance(payload, ray.ObjectRef) else payload
        payload = replace(payload, options=replace(payload.options, threads=threads))
        self.scorer = payload.scorer()
        self.scorer.plan.apply_threads()
        self.name, self.last, self.names = name, last, schema_names

    def __call__(self, batch):
        from musiq.results.rows import MultiPrediction, Prediction
        from musiq.results.several import ModelSet
        from musiq.results.several_arrow import several_table
        rows = batch.to_pylist()
        preds: list = [None] * len(rows)
        images, where = [], []
        for i, r in enumerate(rows):
            if r["error"] is not None:
                preds[i] = Prediction(source=r["path"], error=r["error"])
            else:
                images.append(np.frombuffer(r["pixels"], np.uint8)
                              .reshape(r["height"], r["width"], 3))
                where.append(i)
        for i, p in zip(where, self.scorer.predict_many(images, batch_size=8,
                                                        window=max(len(images), 1))):
            preds[i] = p
        own = several_table([MultiPrediction(p.source, {self.name: p}) for p in preds],
                            ModelSet((self.name,), (self.scorer.kind,)))
        table = batch
        for col in own.column_names:
            if col not in ("path", "error"):
                table = table.append_column(col, own.column(col))
        return table.select(self.names) if self.last else table


def pool_per_model(files, multi, options, threads):
    import ray
    from ray.data import ActorPoolStrategy

    from musiq.decoding.decode import max_file_bytes
    from musiq.distributed import ModelPayload, _decode_batch
    from musiq.distributed_inputs import inputs
    from musiq.engine.plan import make_plan
    from musiq.results.several import ModelSet
    from musiq.results.several_arrow import several_arrow_schema
    names = multi.names
    schema = several_arrow_schema(ModelSet.of({n: s.kind for n, s in multi.scorers.items()}))
    pp = make_plan(options, multi.lead.variant).worker_preprocessor()
    ds = inputs(files, set(), False, ("bytes", "path")).map_batches(
        _decode_batch, fn_kwargs={"preprocessor": pp,
                                  "max_bytes": max_file_bytes(options.max_pixels)},
        batch_size=DECODE_BATCH, batch_format="pyarrow")
    for k, (name, s) in enumerate(multi.scorers.items()):
        payload = ray.put(ModelPayload.of(s, options))
        ds = ds.map_batches(OneModelActor, fn_constructor_kwargs={
            "payload": payload, "name": name, "last": k == len(names) - 1,
            "schema_names": schema.names, "threads": threads},
            batch_size=BATCH, batch_format="pyarrow", compute=ActorPoolStrategy(size=1),
            num_cpus=1 / len(names))
    return ds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--size", default="512x384")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default=None,
                    help="runs to time, separated by ; (default: all four)")
    a = ap.parse_args()
    import ray
    import torch

    import musiq
    from musiq.distributed import score_dataset
    w, h = (int(v) for v in a.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_multi"))
    files = make_images(tmp, a.images, w, h)
    ckpts = []
    for n in ("1", "10"):
        ckpts.append(str(tmp / f"m{n}.npz"))
        subprocess.run([sys.executable, str(ROOT / "tests" / "checkpoints.py"), ckpts[-1],
                        "--classes", n], check=True)
    names = [Path(c).stem for c in ckpts]
    # Loaded once (not timed): the runs time Ray (actor start-up and weight transfer too).
    opts = musiq.ScorerOptions(device="cpu", backend="torch")
    multi = musiq.load(ckpts, options=opts)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    threads = torch.get_num_threads()

    def scores(ds) -> dict:
        rows = ds.take_all()
        assert all(r["error"] is None for r in rows), rows
        return {(r["path"], n): r[n] for r in rows for n in names}

    def together(actors: int):
        return lambda: scores(score_dataset(
            files, multi, options=opts, concurrency=actors, num_cpus=1 / actors,
            threads=max(1, threads // actors), batch_size=BATCH,
            decode_batch_size=DECODE_BATCH))

    def separate() -> dict:
        out = {}
        for n, s in multi.scorers.items():
            for r in score_dataset(files, s, options=opts, threads=threads, batch_size=BATCH,
                                   decode_batch_size=DECODE_BATCH).take_all():
                out[(r["path"], n)] = r["score"]
        return out

    runs = {"all-in-one, 1 actor": together(1), "all-in-one, 2 actors": together(2),
            "pool per model": lambda: scores(pool_per_model(
                files, multi, opts, max(1, threads // 2))),
            "separate runs": separate}
    if a.only:
        runs = {k: v for k, v in runs.items() if k in a.only.split(";")}
    rates: dict[str, list[float]] = {k: [] for k in runs}
    first: dict = {}
    for rnd in range(a.rounds):
        for name, fn in runs.items():
            t = time.perf_counter()
            got = fn()
            dt = time.perf_counter() - t
            first = first or got
            assert max(abs(got[k] - first[k]) for k in first) <= 1e-6, name
            rates[name].append(len(files) / dt)
            print(f"round {rnd + 1} {name:22s} {len(files) / dt:6.2f} images/s "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
    print(f"\n{a.images} JPEGs {a.size}, 2 models, {os.cpu_count()} CPUs, torch {threads} "
          f"threads, median of {a.rounds} rounds")
    base_name = "separate runs" if "separate runs" in rates else next(iter(rates))
    base = statistics.median(rates[base_name])
    for name, r in rates.items():
        m = statistics.median(r)
        print(f"{name:22s} {m:6.2f} images/s  {m / base:5.2f} x {base_name}")
    ray.shutdown()


if __name__ == "__main__":
    main()
