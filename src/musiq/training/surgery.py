"""Model surgery before fine-tuning: a new or rescaled head, a linear probe, frozen layers.

A mixin of :class:`~musiq.training.trainer.Trainer` (it uses the trainer's ``model``,
``config``, ``train_items``, ``train_set``, ``target`` and ``device``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import MusiqError
from .data import collate
from .head import ScaledHead
from .probe import fit_ridge


class HeadSurgery:
    """Head and freezing operations of a :class:`Trainer`."""

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
