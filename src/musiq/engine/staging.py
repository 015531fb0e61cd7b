"""Decoded pixels to the scoring device: pinned, reused host buffers and non-blocking copies.

On CUDA each batch's uint8 pixels are packed into one page-locked host buffer (a ring of
``slots`` buffers, grown when a batch needs more and reused after), copied to the device
with one non-blocking transfer and split there into per-image views. A buffer is reused
only after the copy that read it has finished (a CUDA event), so ``slots`` batches can be
in flight. On CPU the arrays are used where they lie (no copy).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


class PinnedStaging:
    """``to_device(arrays)`` -> device tensors of the same shapes, uint8."""

    def __init__(self, device: torch.device, slots: int = 3) -> None:
        self.device = device
        self.slots = max(slots, 1)
        self._buffers: list[torch.Tensor | None] = [None] * self.slots
        self._events: list[object | None] = [None] * self.slots
        self._next = 0

    def to_device(self, arrays: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """The arrays on :attr:`device` (uint8, contiguous). On CUDA the result may still be
        in transit: use it on the current stream (which orders it after the copy)."""
        if self.device.type != "cuda":
            return [torch.from_numpy(a if a.flags.writeable and a.flags.c_contiguous
                                     else np.array(a)) for a in arrays]
        total = sum(int(a.nbytes) for a in arrays)
        slot = self._next
        self._next = (slot + 1) % self.slots
        event = self._events[slot]
        if event is not None:
            event.synchronize()  # type: ignore[attr-defined]  # the copy that used it is done
        buf = self._buffers[slot]
        if buf is None or buf.numel() < total:
            buf = self._buffers[slot] = torch.empty(max(total, 1), dtype=torch.uint8,
                                                    pin_memory=True)
        host = buf.numpy()
        offset = 0
        for a in arrays:
            n = int(a.nbytes)
            host[offset:offset + n] = a.reshape(-1)
            offset += n
        dev = buf[:total].to(self.device, non_blocking=True)
        ev = torch.cuda.Event()
        ev.record()
        self._events[slot] = ev
        out, offset = [], 0
        for a in arrays:
            n = int(a.nbytes)
            out.append(dev[offset:offset + n].view(a.shape))
            offset += n
        return out
