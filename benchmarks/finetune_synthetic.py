"""Fine-tune MUSIQ for real on a synthetic quality set and report before/after figures.

The set is built from the golden photos (``tests/synthetic.py``): crops of the photos, each
degraded at five levels of blur + JPEG compression with a known label order. ``--split
crops`` validates on other crops of the same six photos, ``--split photos`` trains on five
photos and validates on three others (much harder for a network without pretrained
features). The script

1. evaluates the starting checkpoint on the validation set (SRCC etc.; undefined when the
   head is new, since every prediction is then the same),
2. fine-tunes with :class:`musiq.training.Trainer` (the same code as ``musiq train``),
3. evaluates the written checkpoint with :func:`musiq.evaluate` (scatter plot + report),
4. checks that ``musiq.load(output)`` reproduces the trainer's validation scores.

    python benchmarks/finetune_synthetic.py --out bench_out --init random1-single \\
        --new-head --head-init probe --freeze-blocks 10 --size 160 --crops 4 --epochs 6

``--init random1|random1000|random1-single`` writes a structure-exact checkpoint with
deterministic random weights (``tests/checkpoints.py``); a registry name
(``imagenet``) or a path works too.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

import synthetic  # noqa: E402

import musiq  # noqa: E402
from musiq.training import TrainConfig, Trainer  # noqa: E402

RANDOM_INITS = {"random1": ["--classes", "1"], "random1000": ["--classes", "1000"],
                "random1-single": ["--classes", "1", "--single-scale"],
                "random1000-single": ["--classes", "1000", "--single-scale"]}


def make_init(name: str, out: Path, tool: Path) -> str:
    if name not in RANDOM_INITS:
        return name
    path = out / f"{name}.npz"
    if not path.exists():
        subprocess.run([sys.executable, str(tool), str(path), *RANDOM_INITS[name]], check=True)
    return str(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for data and results")
    ap.add_argument("--photos", type=Path, default=synthetic.GOLDEN_IMAGES)
    ap.add_argument("--make-checkpoint", type=Path,
                    default=ROOT / "tests" / "checkpoints.py")
    ap.add_argument("--init", default="random1000")
    ap.add_argument("--size", type=int, default=256, help="longer side of each image (px)")
    ap.add_argument("--crops", type=int, default=6, help="crops per photo")
    ap.add_argument("--val-crops", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--warmup-epochs", type=float, default=1.0)
    ap.add_argument("--freeze-stem", action="store_true")
    ap.add_argument("--freeze-blocks", type=int, default=0)
    ap.add_argument("--new-head", action="store_true")
    ap.add_argument("--head-init", choices=("zero", "probe"), default="zero")
    ap.add_argument("--split", choices=("crops", "photos"), default="crops")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="run")
    ap.add_argument("--no-plot", action="store_true")
    a = ap.parse_args()

    a.out.mkdir(parents=True, exist_ok=True)
    data = a.out / f"data_{a.size}_{a.crops}_{a.val_crops}"
    photos = list(synthetic.PHOTOS)
    data = data.with_name(data.name + "_" + a.split)
    train_photos, val_photos = ((photos[:6], photos[:6]) if a.split == "crops"
                                else (photos[:5], photos[5:]))
    train = synthetic.make_set(data / "train", train_photos, crops_per_photo=a.crops,
                               size=a.size, seed=a.seed, source_dir=a.photos)
    val = synthetic.make_set(data / "val", val_photos, crops_per_photo=a.val_crops,
                             size=a.size, seed=a.seed + 100, source_dir=a.photos, whole=False)
    init = make_init(a.init, a.out, a.make_checkpoint)
    device = musiq.engine.resolve_device(a.device)

    before = musiq.evaluate(musiq.load(init, device=device), val, bootstrap=0)
    output = a.out / f"{a.tag}.npz"
    t0 = time.perf_counter()
    trainer = Trainer(TrainConfig(
        labels=train, val=val, init=init, output=output, epochs=a.epochs,
        batch_size=a.batch_size, lr=a.lr, warmup_epochs=a.warmup_epochs,
        freeze_stem=a.freeze_stem, freeze_blocks=a.freeze_blocks, new_head=a.new_head,
        head_init=a.head_init,
        device=str(device), amp=a.amp, seed=a.seed), progress=False)
    result = trainer.fit()
    seconds = time.perf_counter() - t0

    loaded = musiq.load(output, device=device)
    after = musiq.evaluate(loaded, val, bootstrap=1000,
                           plot=None if a.no_plot else a.out / f"{a.tag}_scatter.png",
                           report=a.out / f"{a.tag}_evaluation.json")
    reloaded = np.array([x["prediction"] for x in after.items])
    round_trip = float(np.abs(reloaded - np.array(result.predictions)).max())
    summary = {
        "tag": a.tag, "device": str(device), "init": a.init,
        "train_images": len(trainer.train_items), "val_images": len(trainer.val_items),
        "split": a.split, "head_init": a.head_init, "image_size": a.size, "epochs": a.epochs, "lr": a.lr, "batch_size": a.batch_size,
        "freeze_stem": a.freeze_stem, "freeze_blocks": a.freeze_blocks,
        "amp": a.amp, "train_seconds": round(seconds, 1),
        "before": {k: before.stats[k] for k in ("srcc", "plcc", "krcc")},
        "after": {k: after.stats[k] for k in ("srcc", "plcc", "plcc_logistic", "krcc", "rmse")},
        "after_ci": {k: after.stats["ci"][k] for k in ("srcc", "plcc")},
        "after_head_init": {k: result.initial.get(k) for k in ("srcc", "plcc")},
        "best_epoch": result.best.get("epoch"),
        "history": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()
                     if k in ("epoch", "loss", "val_srcc", "val_plcc", "seconds")}
                    for h in result.history],
        "max_abs_diff_trainer_vs_reloaded": round_trip,
    }
    (a.out / f"{a.tag}_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
