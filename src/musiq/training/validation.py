"""Validation during fine-tuning: score the validation images, compare with their labels."""
from __future__ import annotations

import warnings

import numpy as np
import torch

from ..engine.plan import Plan
from ..engine.runtime import Engine
from ..evaluation.metrics import emd, krcc, plcc, srcc
from ..network.model import Musiq
from ..network.outputs import OutputKind
from .data import LabelledImages, collate


class Validator:
    """Scores ``dataset`` (float32, all native tokens, no flips) with a model in eval mode.

    ``kind``: how logits become scores; ``emd_r``: the EMD exponent for distributions.
    Images that cannot be read are left out of the metrics and reported by :meth:`run`.
    """

    def __init__(self, dataset: LabelledImages, kind: OutputKind, *, batch_size: int,
                 emd_r: float, plan: Plan) -> None:
        self.dataset, self.kind = dataset, kind
        self.batch_size, self.emd_r, self.plan = batch_size, emd_r, plan
        self.device = plan.torch_device

    def __len__(self) -> int:
        return len(self.dataset)

    @torch.no_grad()
    def run(self, model: Musiq) -> tuple[dict, list[float | None], list[tuple[int, str]]]:
        """``(metrics, scores, skipped)``: SRCC, PLCC, KRCC, RMSE (and EMD for a
        distribution) over the readable images, their scores in label-file order (None for
        an image that failed), and ``(index, reason)`` of the failed ones."""
        n = len(self.dataset)
        if not n:
            return {}, [], []
        was_training = model.training
        engine = Engine(model, self.plan)  # the scorer's forward pass: fp32, TF32 off
        scores: list[float | None] = [None] * n
        dists: list[list[float] | None] = [None] * n
        skipped: list[tuple[int, str]] = []
        for lo in range(0, n, self.batch_size):
            batch = collate([self.dataset[(i, False)]
                             for i in range(lo, min(lo + self.batch_size, n))])
            skipped += batch.skipped
            if batch.inputs is None:
                continue
            logits = engine.forward(batch.inputs.to(self.device)).float().cpu().numpy()
            for i, row in zip(batch.indices, logits):
                out = self.kind.interpret(row)
                scores[i], dists[i] = out["score"], out.get("distribution")
        model.train(was_training)
        ok = [i for i in range(n) if scores[i] is not None]
        items = self.dataset.items
        pred = np.array([scores[i] for i in ok], np.float64)
        label = np.array([items[i].mos for i in ok], np.float64)
        if len(ok) < 2:
            return {}, scores, skipped
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant predictions (a new zero head)
            m = {"srcc": srcc(pred, label), "plcc": plcc(pred, label),
                 "krcc": krcc(pred, label), "rmse": float(np.sqrt(np.mean((pred - label) ** 2)))}
        if self.kind.name == "distribution":
            m["emd"] = float(emd(np.array([dists[i] for i in ok]), np.array(
                [items[i].distribution for i in ok]), self.emd_r).mean())
        return m, scores, skipped
