"""Training losses: L1/L2 on a MOS, EMD on a distribution over ordered bins."""
from __future__ import annotations

import torch


def l1_loss(pred: torch.Tensor, target: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Mean ``|pred - target| / scale``; ``pred`` ``(B, 1)`` logits, ``target`` ``(B,)``."""
    return ((pred.reshape(-1) - target) / scale).abs().mean()


def l2_loss(pred: torch.Tensor, target: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Mean ``((pred - target) / scale)^2``."""
    return (((pred.reshape(-1) - target) / scale) ** 2).mean()


def emd_loss(logits: torch.Tensor, target: torch.Tensor, r: float = 2.0) -> torch.Tensor:
    """Earth mover's distance between ``softmax(logits)`` and ``target`` (both ``(B, K)``,
    target rows summing to 1): mean over images of ``(mean_k |CDF diff|^r)^(1/r)``.

    The small epsilon keeps the gradient finite where the two CDFs agree exactly (r > 1).
    """
    p = torch.softmax(logits, dim=-1)
    d = (torch.cumsum(p, -1) - torch.cumsum(target, -1)).abs()
    return ((d ** r).mean(dim=-1) + 1e-12).pow(1.0 / r).mean()


#: Loss name -> function ``(logits, targets, scale_or_r) -> scalar``; what the trainer uses.
LOSSES = {"l1": l1_loss, "l2": l2_loss, "emd": emd_loss}
#: Which output each loss fits: one value (a MOS) or a distribution.
LOSS_TARGET = {"l1": "mos", "l2": "mos", "emd": "distribution"}


def loss_for(name: str, target: str) -> str:
    """The loss to use: ``auto`` is l2 for a MOS and emd for a distribution; an unknown name
    or one that does not fit ``target`` raises ValueError."""
    if name == "auto":
        return "l2" if target == "mos" else "emd"
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: use auto, {', '.join(LOSSES)}")
    if LOSS_TARGET[name] != target:
        raise ValueError(f"loss '{name}' does not fit a {target} head: use l1/l2 for one "
                         "output (MOS) and emd for a distribution")
    return name
