"""Fine-tune MUSIQ on labelled images and write an official-format checkpoint.

    >>> from musiq.training import TrainConfig, Trainer
    >>> result = Trainer(TrainConfig(labels="train.csv", val="val.csv", init="imagenet",
    ...                              output="mine.npz", epochs=10)).fit()
    >>> result.best["srcc"], result.output
    >>> musiq.load("mine.npz").score("photo.jpg")       # the fine-tuned model

The run makes the network with :func:`musiq.create_model` from ``init``, replaces the head
when the number of outputs changes (:mod:`.surgery`), trains it on tokens from a
:class:`~musiq.tokens.preprocessor.Preprocessor`, scores the validation set after every epoch
(:mod:`.validation`) and keeps the epoch with the best SRCC. The run's files (per-epoch
checkpoints, the resume state from which ``resume=True`` continues exactly) are kept by
:mod:`.checkpointing` (:mod:`.runstate`). Images that cannot be read are skipped and
reported, never fatal. Non-finite labels, starting weights, losses or trained weights stop
the run with an error, keeping the last good files (:mod:`.guards`).
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import nullcontext
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..errors import MusiqError
from ..network.factory import create_model
from ..evaluation.labels import LabelItem, read_labels
from ..network.model import Musiq
from ..network.outputs import output_kind
from ..tokens.preprocessor import Preprocessor
from ..network.architecture import OFFICIAL
from ..engine.plan import ScorerOptions, make_plan
from ..scorer import Scorer
from .checkpointing import RunFiles
from .config import TrainConfig
from .data import Batch, EpochView, LabelledImages, collate, epoch_order
from .guards import check_init, check_labels, check_loss
from .head import ScaledHead
from .losses import LOSSES, loss_for
from .result import TrainResult, better, check_present, fmt, stderr, write_json
from .runstate import RunState
from .schedule import warmup_cosine
from .surgery import HeadSurgery
from .validation import Validator

__all__ = ["Trainer", "TrainResult", "TrainConfig", "train"]


class Trainer(HeadSurgery, RunState):
    """One fine-tuning run (see :class:`TrainConfig` for every setting).

    ``log`` receives one line per epoch (default: stderr); ``progress`` shows a per-batch
    bar with the running loss on stderr when stderr is a terminal (None: only then; a
    redirected log gets the epoch lines alone).
    """

    def __init__(self, config: TrainConfig, *, log: Callable[[str], None] | None = stderr,
                 progress: bool | None = True) -> None:
        self.config = c = config
        c.check_output()
        self.log = log or (lambda msg: None)
        self.progress = bool(progress) and sys.stderr.isatty()
        # The run's device and numerics, resolved once as for scoring (validation runs the
        # engine's exact fp32 forward, TF32 off).
        self.plan = make_plan(ScorerOptions(device=c.device, max_pixels=c.max_pixels), OFFICIAL)
        self.device = self.plan.torch_device
        torch.manual_seed(c.seed)
        self._read_labels()
        net = self._setup_model()
        self._setup_data(net)
        self._setup_optimizer()
        self.work_dir = c.resolved_work_dir()
        self.files = RunFiles(self.work_dir, c.keep_checkpoints)
        self.epoch = 0
        self.history: list[dict] = []
        self.initial: dict = {}
        self.best: dict = {}
        self.best_predictions: list[float] = []
        if c.resume:
            self._load_state()

    def _read_labels(self) -> None:
        c = self.config
        self.train_items = read_labels(c.labels, c.images, c.columns)
        self.val_items = read_labels(c.val, c.val_images, c.columns) if c.val else []
        check_present(self.train_items, "training", c.labels)
        check_labels(self.train_items, c.labels)
        if self.val_items:
            check_present(self.val_items, "validation", c.val)
            check_labels(self.val_items, c.val)

    def _setup_model(self) -> Musiq:
        c = self.config
        has_dist = all(it.distribution is not None for it in self.train_items)
        net = create_model(c.init, checkpoint_dir=c.checkpoint_dir)
        check_init(net, str(c.init))
        outputs = c.outputs or (len(self.train_items[0].distribution) if has_dist else 1)
        if outputs != 1 and not has_dist:
            raise MusiqError(f"{c.labels}: {outputs} outputs need distribution labels "
                             "(--dist-columns or --label-format ava)")
        self.target = "mos" if outputs == 1 else "distribution"
        self.output_kind = output_kind(self.target)
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
        return net

    def _setup_data(self, net: Musiq) -> None:
        c = self.config
        eval_pp = Preprocessor(net.variant.preprocess, max_pixels=c.max_pixels)
        train_pp = eval_pp.with_config(max_seq_len_from_original_res=c.max_native_tokens)
        budget = int(c.cache_mb) * 2 ** 20
        self.train_set = LabelledImages(self.train_items, train_pp, self.target,
                                        cache_bytes=budget // 2)
        self.val_set = LabelledImages(self.val_items, eval_pp, self.target,
                                      cache_bytes=budget // 2)
        self.validator = Validator(self.val_set, self.output_kind, batch_size=c.batch_size,
                                   emd_r=c.emd_r, plan=self.plan)
        self.skipped: dict[str, str] = {}
        self.probe_lambda: float | None = None
        if c.head_init == "probe" and self.head_is_new and not c.resume:
            self._probe_head()

    def _setup_optimizer(self) -> None:
        c = self.config
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

    def _step(self) -> float:
        """One optimizer step (clipping, scaler); returns the learning rate it used."""
        c = self.config
        if c.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], c.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        lr = float(self.scheduler.get_last_lr()[0])
        self.scheduler.step()
        return lr

    def train_epoch(self, epoch: int) -> dict:
        """One pass over the training set; returns ``loss`` (mean per batch) and timing.
        Raises :class:`MusiqError` when a batch's loss is not finite."""
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
            boundary = (k + 1) % c.accumulate == 0 or k + 1 == n_batches
            if batch.inputs is None:
                if boundary:
                    self.scheduler.step()  # keep the schedule's length fixed
                continue
            with autocast:
                logits = self.model(batch.inputs.to(self.device))
            loss = self._loss(logits, batch.targets.to(self.device))
            losses.append(float(loss.detach()))
            check_loss(losses[-1], epoch, k + 1, self.kept_note())
            self.scaler.scale(loss / c.accumulate).backward()
            if boundary:
                lr = self._step()  # the rate this step used
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
                self.log(f"before training: val SRCC {fmt(self.initial['srcc'])}  PLCC "
                         f"{fmt(self.initial['plcc'])}  ({len(self.val_items)} images)")
        if self.probe_lambda is not None:
            self.log(f"head initialised by a linear probe (ridge lambda {self.probe_lambda:g})")
        self.log(f"training {len(self.train_items)} images from {self.initialised_from} on "
                 f"{self.device} for {_n(c.epochs, 'epoch')}, "
                 f"{_n(self.steps_per_epoch, 'step')} each, "
                 f"loss {self.loss_name}, work dir {self.work_dir}")
        while self.epoch < c.epochs:
            if stop_after is not None and self.epoch >= stop_after:
                return None
            self._run_epoch(self.epoch + 1)
        return self._finish()

    def _run_epoch(self, epoch: int) -> None:
        """Train, validate and save epoch ``epoch``; log its line."""
        c = self.config
        stats = self.train_epoch(epoch)
        val, preds = self.validate()
        row = {"epoch": epoch, **stats, **{f"val_{k}": v for k, v in val.items()}}
        improved = not self.best or (
            not val or better(val["srcc"], self.best.get("srcc", float("nan"))))
        if improved:
            self.best = {"epoch": epoch, **val, "loss": stats["loss"]}
            self.best_predictions = preds
        self.history.append(row)
        self.epoch = epoch
        self._save_epoch(improved)
        self.log(f"epoch {epoch}/{c.epochs}  loss {stats['loss']:.4f}  "
                 + (f"val SRCC {fmt(val['srcc'])}  PLCC {fmt(val['plcc'])}  " if val else "")
                 + f"lr {stats['lr']:.2e}  {stats['seconds']:.1f} s"
                 + ("  (best)" if improved and val else ""))

    def _finish(self) -> TrainResult:
        params = self.files.best_params()
        if isinstance(self.model.head, ScaledHead):
            self.model.head = self.model.head.folded()
        self.model.load_official(params)
        out = self.files.publish(self.config.output)
        skipped = [{"path": p, "reason": r} for p, r in self.skipped.items()]
        result = TrainResult(out, self.initial, self.best, self.history, self.best_predictions,
                             skipped)
        write_json(self.work_dir / "history.json",
                   {"config": self.config.to_dict(), **result.to_dict()})
        self.log(f"wrote {out} (epoch {self.best.get('epoch')}"
                 + (f", val SRCC {fmt(self.best['srcc'])}" if "srcc" in self.best else "") + ")"
                 + (f"; {len(skipped)} unreadable image(s) skipped" if skipped else ""))
        return result

    def scorer(self, **options) -> Scorer:
        """A :class:`Scorer` on the model as it is now (after :meth:`fit`: the chosen one)."""
        return Scorer(self.model, self.model.variant, device=self.device, **options)


def train(labels: str | os.PathLike, output: str | os.PathLike, **options) -> TrainResult:
    """Fine-tune and write ``output`` (see :class:`TrainConfig` for ``options``).

    ``log`` and ``progress`` go to :class:`Trainer`; everything else to the config.
    """
    kw = {k: options.pop(k) for k in ("log", "progress") if k in options}
    return Trainer(TrainConfig(labels=labels, output=output, **options), **kw).fit()


def _n(count: int, noun: str) -> str:
    """``1 step``, ``2 steps``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
