"""Fine-tune MUSIQ on labelled images and write an official-format checkpoint.

    >>> from musiq.training import TrainConfig, Trainer
    >>> result = Trainer(TrainConfig(labels="train.csv", val="val.csv", init="imagenet",
    ...                              output="mine.npz", epochs=10)).fit()
    >>> result.best["srcc"], result.output
    >>> musiq.load("mine.npz").score("photo.jpg")       # the fine-tuned model

The run makes the network with :func:`musiq.create_model` from ``init``, replaces the head
when the number of outputs changes, trains it on tokens from a
:class:`~musiq.preprocessor.Preprocessor`, scores the validation set after every epoch
(:mod:`.validation`) and keeps the epoch with the best SRCC. The run's files (per-epoch
checkpoints, the resume state from which ``resume=True`` continues exactly) are kept by
:mod:`.checkpointing`. Images that cannot be read are skipped and reported, never fatal.
"""
from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..errors import MusiqError
from ..preprocess import MULTI_SCALE, SINGLE_SCALE
from ..factory import create_model
from ..labels import LabelItem, read_labels
from ..model import Musiq
from ..outputs import output_kind
from ..preprocessor import Preprocessor
from ..scorer import Scorer, resolve_device
from .checkpointing import RunFiles
from .config import TrainConfig
from .data import Batch, EpochView, LabelledImages, collate, epoch_order
from .head import ScaledHead
from .losses import LOSSES, loss_for
from .probe import fit_ridge
from .schedule import warmup_cosine
from .validation import Validator


@dataclass
class TrainResult:
    """What a run produced.

    ``initial``: validation metrics before training (SRCC is NaN when a new zero head makes
    every prediction equal); ``best``: those of the chosen epoch (``epoch``, ``srcc``,
    ``plcc``, ``krcc``, ``rmse``, ``emd`` for distributions, ``loss``); ``history``: one
    dict per epoch; ``predictions``: validation scores of the chosen model, in label-file
    order (None for an image that could not be read); ``output``: the written checkpoint;
    ``skipped``: images left out because they could not be read (``path``, ``reason``).
    """

    output: Path
    initial: dict
    best: dict
    history: list[dict] = field(default_factory=list)
    predictions: list[float | None] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"output": str(self.output), "initial": self.initial, "best": self.best,
                "history": self.history, "skipped": self.skipped}


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _missing(items: list[LabelItem], what: str, file) -> None:
    gone = [it for it in items if not it.path.is_file()]
    if gone:
        shown = "\n".join(f"  {it.path} (line {it.line})" for it in gone[:10])
        more = f"\n  ... and {len(gone) - 10} more" if len(gone) > 10 else ""
        raise MusiqError(f"{file}: {len(gone)} of {len(items)} {what} image(s) not found:\n"
                         f"{shown}{more}")


class Trainer:
    """One fine-tuning run (see :class:`TrainConfig` for every setting).

    ``log`` receives one line per epoch (default: stderr); ``progress`` shows a per-batch
    bar with the running loss on stderr when stderr is a terminal (None: only then; a
    redirected log gets the epoch lines alone).
    """

    def __init__(self, config: TrainConfig, *, log: Callable[[str], None] | None = _stderr,
                 progress: bool | None = True) -> None:
        self.config = c = config
        c.check_output()
        self.log = log or (lambda msg: None)
        self.progress = bool(progress) and sys.stderr.isatty()
        self.device = resolve_device(c.device)
        torch.manual_seed(c.seed)
        self.train_items = read_labels(c.labels, c.images, c.columns)
        self.val_items = read_labels(c.val, c.val_images, c.columns) if c.val else []
        _missing(self.train_items, "training", c.labels)
        if self.val_items:
            _missing(self.val_items, "validation", c.val)

        has_dist = all(it.distribution is not None for it in self.train_items)
        net = create_model(c.init, checkpoint_dir=c.checkpoint_dir)
        outputs = c.outputs or (len(self.train_items[0].distribution) if has_dist else 1)
        if outputs != 1 and not has_dist:
            raise MusiqError(f"{c.labels}: {outputs} outputs need distribution labels "
                             "(--dist-columns or --label-format ava)")
        self.target = "mos" if outputs == 1 else "distribution"
        self.output_kind = output_kind("mos" if outputs == 1 else "distribution")
        try:
            self.loss_name = loss_for(c.loss, self.target)
        except ValueError as e:
            raise MusiqError(f"{e} ({outputs} output(s))") from None
        self.loss_fn = LOSSES[self.loss_name]
        mos = np.array([it.mos for it in self.train_items], np.float64)
        self.loss_scale = float(mos.std()) or 1.0

        self.model: Musiq = net.train()
        self.initialised_from = net.source.name
        self.head_is_new = c.new_head or self.model.variant.num_classes != outputs
        if self.head_is_new:
            self._new_head(outputs)
        self._scale_head()
        self._freeze()
        self.model.to(self.device)

        eval_pp = Preprocessor(SINGLE_SCALE if net.variant.single_scale else MULTI_SCALE,
                               max_pixels=c.max_pixels)
        train_pp = eval_pp.with_config(max_seq_len_from_original_res=c.max_native_tokens)
        budget = int(c.cache_mb) * 2 ** 20
        self.train_set = LabelledImages(self.train_items, train_pp, self.target,
                                        cache_bytes=budget // 2)
        self.val_set = LabelledImages(self.val_items, eval_pp, self.target,
                                      cache_bytes=budget // 2)
        self.validator = Validator(self.val_set, self.output_kind, batch_size=c.batch_size,
                                   emd_r=c.emd_r, device=self.device)
        self.skipped: dict[str, str] = {}
        self.probe_lambda: float | None = None
        if c.head_init == "probe" and self.head_is_new and not c.resume:
            self._probe_head()

        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=c.lr, momentum=c.momentum,
                                         weight_decay=c.weight_decay)
        batches = -(-len(self.train_items) // c.batch_size)
        self.steps_per_epoch = -(-batches // max(c.accumulate, 1))
        self.total_steps = self.steps_per_epoch * c.epochs
        warmup = min(int(round(c.warmup_epochs * self.steps_per_epoch)), self.total_steps // 2)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, self.total_steps, warmup))
        amp = c.amp if c.amp != "auto" else ("bf16" if self.device.type == "cuda" else "off")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")

        self.work_dir = c.resolved_work_dir()
        self.files = RunFiles(self.work_dir, c.keep_checkpoints)
        self.epoch = 0
        self.history: list[dict] = []
        self.initial: dict = {}
        self.best: dict = {}
        self.best_predictions: list[float] = []
        if c.resume:
            self._load_state()

    # -- model surgery ---------------------------------------------------------------------
    def _new_head(self, outputs: int) -> None:
        """A fresh head: zero weights, bias at the training labels' mean (MOS) or the log of
        their mean distribution, so training starts from the best constant prediction."""
        head = nn.Linear(self.model.variant.hidden, outputs)
        with torch.no_grad():
            head.weight.zero_()
            if outputs == 1:
                head.bias.fill_(float(np.mean([it.mos for it in self.train_items])))
            else:
                mean = np.mean([it.distribution for it in self.train_items], axis=0)
                head.bias.copy_(torch.from_numpy(np.log(np.maximum(mean, 1e-6))).float())
        self.model.head = head
        self.model.variant = self.model.variant.with_head(outputs)

    @torch.no_grad()
    def _probe_head(self) -> None:
        """Fit the new MOS head in closed form on the training images' CLS features
        (see :mod:`.probe`); distribution heads keep their zero start."""
        if self.target != "mos":
            return
        self.model.eval()
        feats, rows = [], []
        bs = self.config.batch_size
        for lo in range(0, len(self.train_set), bs):
            batch = collate([self.train_set[(i, False)]
                             for i in range(lo, min(lo + bs, len(self.train_set)))])
            self._note_skipped(batch, self.train_items)
            if batch.inputs is None:
                continue
            inputs = batch.inputs.to(self.device)
            feats.append(self.model.encode(self.model.embed(inputs), inputs.lengths)
                         .float().cpu().numpy())
            rows += batch.indices
        self.model.train()
        if len(rows) < 2:
            return
        head: ScaledHead = self.model.head
        mos = np.array([self.train_items[i].mos for i in rows])
        z = (mos - float(head.mean)) / float(head.std)
        w, b, self.probe_lambda = fit_ridge(np.concatenate(feats), z)
        head.linear.weight.copy_(torch.from_numpy(w).float()[None])
        head.linear.bias.fill_(b)

    def _scale_head(self) -> None:
        """Train a MOS head in standardised label units (see :mod:`.head`)."""
        if self.target == "mos":
            mos = np.array([it.mos for it in self.train_items], np.float64)
            self.model.head = ScaledHead.wrap(self.model.head, float(mos.mean()),
                                              self.loss_scale)

    def official_params(self) -> dict[str, np.ndarray]:
        """The model's parameters under the official names (head in label units)."""
        head = self.model.head
        if not isinstance(head, ScaledHead):
            return self.model.official_params()
        self.model.head = head.folded()
        try:
            return self.model.official_params()
        finally:
            self.model.head = head

    def _freeze(self) -> None:
        """``freeze_stem``: the patch stem (convolutions, GroupNorms, embedding Dense).
        ``freeze_blocks`` N > 0: everything below encoder block N as well (stem, position
        and scale embeddings, CLS, blocks 0..N-1), so no gradient is computed there."""
        c = self.config
        m = self.model
        if not 0 <= c.freeze_blocks <= len(m.blocks):
            raise MusiqError(f"freeze_blocks must be 0..{len(m.blocks)}, not {c.freeze_blocks}")
        if c.freeze_stem or c.freeze_blocks > 0:
            m.stem.requires_grad_(False)
        if c.freeze_blocks > 0:
            for p in (m.pos_embedding, m.scale_embedding, m.cls):
                p.requires_grad_(False)
            for block in m.blocks[:c.freeze_blocks]:
                block.requires_grad_(False)

    # -- evaluation --------------------------------------------------------------------------
    def validate(self) -> tuple[dict, list[float | None]]:
        """Validation metrics (float32, all native tokens) and the scores in file order."""
        metrics, scores, skipped = self.validator.run(self.model)
        for i, reason in skipped:
            self._skip(self.val_items[i], reason)
        return metrics, scores

    def _note_skipped(self, batch: Batch, items: list[LabelItem]) -> None:
        for i, reason in batch.skipped:
            self._skip(items[i], reason)

    def _skip(self, item: LabelItem, reason: str) -> None:
        key = str(item.path)
        if key not in self.skipped:
            self.skipped[key] = reason
            self.log(f"skipping {key} (line {item.line}): {reason}")

    # -- training ----------------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.target == "distribution":
            return self.loss_fn(logits, targets, self.config.emd_r)
        return self.loss_fn(logits, targets.reshape(-1), self.loss_scale)

    def train_epoch(self, epoch: int) -> dict:
        """One pass over the training set; returns ``loss`` (mean per batch) and timing."""
        c = self.config
        order = epoch_order(len(self.train_set), epoch, c.seed, c.flip)
        loader = DataLoader(EpochView(self.train_set, order), batch_size=c.batch_size,
                            collate_fn=collate, num_workers=c.workers)
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype)
                    if self.amp_dtype is not None else nullcontext())
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        losses = []
        lr = float(self.scheduler.get_last_lr()[0])
        t0 = time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch}/{c.epochs}", unit="batch", leave=False,
                   disable=not self.progress, file=sys.stderr)
        n_batches = len(loader)
        for k, batch in enumerate(bar):
            batch: Batch
            self._note_skipped(batch, self.train_items)
            if batch.inputs is None:
                if (k + 1) % c.accumulate == 0 or k + 1 == n_batches:
                    self.scheduler.step()  # keep the schedule's length fixed
                continue
            with autocast:
                logits = self.model(batch.inputs.to(self.device))
            loss = self._loss(logits, batch.targets.to(self.device))
            self.scaler.scale(loss / c.accumulate).backward()
            losses.append(float(loss.detach()))
            if (k + 1) % c.accumulate == 0 or k + 1 == n_batches:
                if c.clip_grad > 0:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(
                        [p for p in self.model.parameters() if p.requires_grad], c.clip_grad)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                lr = float(self.scheduler.get_last_lr()[0])  # the rate this step used
                self.scheduler.step()
            bar.set_postfix(loss=f"{np.mean(losses):.4f}")
        bar.close()
        seconds = time.perf_counter() - t0
        return {"loss": float(np.mean(losses)) if losses else float("nan"), "seconds": seconds,
                "images_per_s": len(order) / seconds if seconds > 0 else None,
                "lr": lr}

    def fit(self, stop_after: int | None = None) -> TrainResult | None:
        """Train the remaining epochs, validate after each, write the output checkpoint.

        ``stop_after``: stop once that epoch is done, without writing the output (returns
        None); ``resume=True`` continues later exactly as if never stopped.
        """
        c = self.config
        if self.epoch == 0:
            self.initial, preds = self.validate()
            if self.initial:
                self.log(f"before training: val SRCC {_f(self.initial['srcc'])}  PLCC "
                         f"{_f(self.initial['plcc'])}  ({len(self.val_items)} images)")
        if self.probe_lambda is not None:
            self.log(f"head initialised by a linear probe (ridge lambda {self.probe_lambda:g})")
        self.log(f"training {len(self.train_items)} images from {self.initialised_from} on "
                 f"{self.device} for {_n(c.epochs, 'epoch')}, "
                 f"{_n(self.steps_per_epoch, 'step')} each, "
                 f"loss {self.loss_name}, work dir {self.work_dir}")
        while self.epoch < c.epochs:
            if stop_after is not None and self.epoch >= stop_after:
                return None
            epoch = self.epoch + 1
            stats = self.train_epoch(epoch)
            val, preds = self.validate()
            row = {"epoch": epoch, **stats, **{f"val_{k}": v for k, v in val.items()}}
            improved = not self.best or (
                not val or _better(val["srcc"], self.best.get("srcc", float("nan"))))
            if improved:
                self.best = {"epoch": epoch, **val, "loss": stats["loss"]}
                self.best_predictions = preds
            self.history.append(row)
            self.epoch = epoch
            self._save_epoch(improved)
            self.log(f"epoch {epoch}/{c.epochs}  loss {stats['loss']:.4f}  "
                     + (f"val SRCC {_f(val['srcc'])}  PLCC {_f(val['plcc'])}  " if val else "")
                     + f"lr {stats['lr']:.2e}  {stats['seconds']:.1f} s"
                     + ("  (best)" if improved and val else ""))
        return self._finish()

    def _finish(self) -> TrainResult:
        params = self.files.best_params()
        if isinstance(self.model.head, ScaledHead):
            self.model.head = self.model.head.folded()
        self.model.load_official(params)
        out = self.files.publish(self.config.output)
        skipped = [{"path": p, "reason": r} for p, r in self.skipped.items()]
        result = TrainResult(out, self.initial, self.best, self.history, self.best_predictions,
                             skipped)
        _write_json(self.work_dir / "history.json",
                    {"config": self.config.to_dict(), **result.to_dict()})
        self.log(f"wrote {out} (epoch {self.best.get('epoch')}"
                 + (f", val SRCC {_f(self.best['srcc'])}" if "srcc" in self.best else "") + ")"
                 + (f"; {len(skipped)} unreadable image(s) skipped" if skipped else ""))
        return result

    def scorer(self, **options) -> Scorer:
        """A :class:`Scorer` on the model as it is now (after :meth:`fit`: the chosen one)."""
        return Scorer(self.model, self.model.variant, device=self.device, **options)

    # -- checkpoints -----------------------------------------------------------------------
    def _save_epoch(self, improved: bool) -> None:
        state = {"epoch": self.epoch, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "history": json.dumps({"history": self.history, "initial": self.initial,
                                        "best": self.best,
                                        "best_predictions": self.best_predictions,
                                        "skipped": self.skipped})}
        self.files.save_epoch(self.epoch, self.official_params(), state, improved)
        self.model.train()

    def _load_state(self) -> None:
        state = self.files.load_state()
        if state is None:
            self.log(f"nothing to resume in {self.work_dir}; starting from {self.config.init}")
            return
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise MusiqError(f"{self.files.state}: does not fit this model/configuration "
                             f"({e})") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        saved = json.loads(state["history"])
        self.history, self.initial, self.best = saved["history"], saved["initial"], saved["best"]
        self.best_predictions = saved["best_predictions"]
        self.skipped = saved.get("skipped", {})
        self.log(f"resumed from {self.files.state} after epoch {self.epoch}")


def _better(new: float, old: float) -> bool:
    if np.isnan(new):
        return False
    return np.isnan(old) or new > old


def _f(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.4f}"


def _write_json(path: Path, data: dict) -> None:
    from ..evaluation import write_json
    write_json(path, data)


def train(labels: str | os.PathLike, output: str | os.PathLike, **options) -> TrainResult:
    """Fine-tune and write ``output`` (see :class:`TrainConfig` for ``options``).

    ``log`` and ``progress`` go to :class:`Trainer`; everything else to the config.
    """
    kw = {k: options.pop(k) for k in ("log", "progress") if k in options}
    return Trainer(TrainConfig(labels=labels, output=output, **options), **kw).fit()


def _n(count: int, noun: str) -> str:
    """``1 step``, ``2 steps``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
