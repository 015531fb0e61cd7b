"""Saving and restoring a run's state after each epoch (exact resume).

A mixin of :class:`~musiq.training.trainer.Trainer`; the files are :mod:`.checkpointing`'s.
Non-finite weights are never written (:mod:`.guards`).
"""
from __future__ import annotations

import json

from ..errors import MusiqError
from .guards import check_params


class RunState:
    """Per-epoch checkpoint and resume state of a :class:`Trainer`."""

    def kept_note(self) -> str:
        """Where the last good files are, for an error message."""
        if self.epoch == 0:
            return "nothing was written"
        return f"the last good checkpoints are kept in {self.work_dir} (epoch {self.epoch})"

    def _save_epoch(self, improved: bool) -> None:
        params = self.official_params()
        check_params(params, self.epoch, self.kept_note_before())
        state = {"epoch": self.epoch, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "history": json.dumps({"history": self.history, "initial": self.initial,
                                        "best": self.best,
                                        "best_predictions": self.best_predictions,
                                        "skipped": self.skipped})}
        self.files.save_epoch(self.epoch, params, state, improved)
        self.model.train()

    def kept_note_before(self) -> str:
        """:meth:`kept_note` for the epoch being saved (the previous one is the last good)."""
        if self.epoch <= 1:
            return "nothing was written"
        return (f"the last good checkpoints are kept in {self.work_dir} "
                f"(epoch {self.epoch - 1})")

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
