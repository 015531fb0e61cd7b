"""``musiq train``: fine-tune MUSIQ on labelled images, write an official-format checkpoint.

Starts from an official checkpoint (``imagenet`` is the one meant for this) or any ``.npz``,
replaces the head when the number of outputs changes (1 for a MOS, 10 for AVA-style vote
distributions), trains with SGD + momentum, warm-up and cosine decay, keeps the epoch with the
best validation SRCC and writes it to ``--output`` (loadable by ``musiq.load`` and by the
original code). Per-epoch checkpoints and the resume state go to ``--work-dir``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..decoding.decode import DEFAULT_MAX_PIXELS
from ..training.config import TrainConfig
from .labels import add_label_options, columns_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune on labelled images",
                       description=__doc__.split("\n")[0])
    d = TrainConfig(labels="", output="")
    _data_options(p)
    _model_options(p, d)
    _optimisation_options(p, d)
    _runtime_options(p, d)
    add_label_options(p)
    p.set_defaults(func=run)


def _data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--labels", "-l", required=True, metavar="TRAIN.csv",
                   help="training labels (default columns: image, mos)")
    g.add_argument("--val", metavar="VAL.csv", help="validation labels (picks the best epoch)")
    g.add_argument("--images", metavar="DIR", help="folder of the training images "
                   "(default: the label file's folder)")
    g.add_argument("--val-images", metavar="DIR", help="folder of the validation images "
                   "(default: --images if given, else the validation file's folder)")


def _model_options(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--init", default=d.init, metavar="NAME|PATH",
                   help="starting checkpoint: imagenet (default), koniq, ... or a .npz path")
    g.add_argument("--checkpoint-dir", metavar="DIR", help="where named checkpoints are")
    g.add_argument("--output", "-o", required=True, metavar="OUT.npz",
                   help="the fine-tuned checkpoint (official format); an existing file is "
                        "refused unless --force")
    g.add_argument("--force", action="store_true",
                   help="overwrite an existing --output")
    g.add_argument("--outputs", type=int, choices=(1, 10),
                   help="head outputs: 1 (MOS) or 10 (distribution); default from the labels")
    g.add_argument("--new-head", action="store_true",
                   help="start from a fresh head even when the checkpoint's has the right size")
    g.add_argument("--head-init", choices=("zero", "probe"), default=d.head_init,
                   help="a new MOS head starts at zero (default) or from a closed-form linear "
                        "probe on the training features (LP-FT)")
    g.add_argument("--freeze-stem", action="store_true",
                   help="do not train the patch stem (convolutions and patch embedding)")
    g.add_argument("--freeze-blocks", type=int, default=d.freeze_blocks, metavar="N",
                   help="do not train anything below encoder block N (0-14; default 0)")


def _optimisation_options(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=d.epochs, metavar="N")
    g.add_argument("--batch-size", "-b", type=int, default=d.batch_size, metavar="N",
                   help=f"images per forward pass (default {d.batch_size})")
    g.add_argument("--accumulate", type=int, default=d.accumulate, metavar="N",
                   help="forward passes per optimizer step (gradient accumulation)")
    g.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate ({d.lr})")
    g.add_argument("--momentum", type=float, default=d.momentum)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, metavar="E",
                   help="linear warm-up length, then cosine decay (default 1)")
    g.add_argument("--clip-grad", type=float, default=d.clip_grad, metavar="NORM",
                   help="gradient norm clipping (default 1.0; 0 = off)")
    g.add_argument("--loss", choices=("auto", "l1", "l2", "emd"), default=d.loss,
                   help="auto: l2 for a MOS, emd for a distribution")
    g.add_argument("--emd-r", type=float, default=d.emd_r, help="EMD exponent (default 2)")
    g.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    g.add_argument("--max-native-tokens", type=int, default=d.max_native_tokens, metavar="N",
                   help="cap on native-resolution tokens per training image (default 512; "
                        "-1 = all)")
    g.add_argument("--seed", type=int, default=d.seed)


def _runtime_options(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default=d.device, help="cpu, cuda, cuda:N or auto (default)")
    g.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default=d.amp,
                   help="mixed precision: auto = bf16 on CUDA, off on CPU")
    g.add_argument("--workers", type=int, default=d.workers, metavar="N",
                   help="data loader processes (default 0: in the main process)")
    g.add_argument("--cache-mb", type=int, default=d.cache_mb, metavar="MB",
                   help=f"memory for keeping preprocessed tokens (default {d.cache_mb})")
    g.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="refuse images above N pixels (0 = no limit)")
    g.add_argument("--work-dir", metavar="DIR",
                   help="per-epoch checkpoints, resume state, history.json "
                        "(default: OUT.train/ beside the output)")
    g.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, metavar="K",
                   help="per-epoch checkpoints kept (newest; default 3)")
    g.add_argument("--keep-run-files", action="store_true",
                   help="keep the per-epoch checkpoints and resume state in the default work "
                        "dir after the run finishes (removed then by default: hundreds of MB; "
                        "history.json stays; a --work-dir you name is always kept)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run saved in the work dir")
    g.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bar (it is shown only when stderr is a terminal)")


def run(args: argparse.Namespace) -> int:
    from ..evaluation.core import json_safe  # these need scipy: imported only when used
    from ..training import Trainer

    config = TrainConfig(
        labels=args.labels, output=args.output, val=args.val, images=args.images,
        val_images=args.val_images or args.images, columns=columns_from_args(args),
        init=args.init, checkpoint_dir=args.checkpoint_dir, outputs=args.outputs,
        new_head=args.new_head, head_init=args.head_init, epochs=args.epochs, batch_size=args.batch_size,
        accumulate=args.accumulate, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
        clip_grad=args.clip_grad, loss=args.loss, emd_r=args.emd_r, flip=not args.no_flip,
        max_native_tokens=args.max_native_tokens, freeze_stem=args.freeze_stem,
        freeze_blocks=args.freeze_blocks, device=args.device, amp=args.amp,
        workers=args.workers, cache_mb=args.cache_mb, seed=args.seed,
        max_pixels=args.max_pixels or None, work_dir=args.work_dir,
        keep_checkpoints=args.keep_checkpoints, resume=args.resume, force=args.force)
    result = Trainer(config, progress=not args.quiet).fit()
    print(json.dumps(json_safe(result.to_dict()), indent=2))
    if not args.work_dir and not args.keep_run_files:
        work_dir = config.resolved_work_dir()
        freed = remove_run_files(work_dir)
        if freed:
            print(f"musiq train: removed the finished run's checkpoints and resume state from "
                  f"{work_dir} ({freed / 1e6:.0f} MB; --keep-run-files keeps them)",
                  file=sys.stderr)
    return 0


def remove_run_files(work_dir: Path) -> int:
    """Delete a finished run's per-epoch checkpoints, ``best.npz`` and resume state (the
    output holds the result); ``history.json`` stays. Returns the bytes freed."""
    freed = 0
    for pattern in ("epoch_*.npz", "best.npz", "state.pt", "*.partial"):
        for path in work_dir.glob(pattern):
            try:
                size = path.stat().st_size
                path.unlink()
            except OSError:
                continue
            freed += size
    return freed
