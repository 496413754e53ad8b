"""Where a run is: the epoch history and the progress of the current stage, as one object.

Saved after every epoch as ``checkpoints/state.json`` (next to the weights and optimizer state), so
``--resume`` continues a stopped run from its last finished epoch with the same best-epoch bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from training.config import EarlyStoppingConfig
from training.selection import ModelSelector


@dataclass
class TrainState:
    """Epoch records of every stage so far, and the stage in progress (index, epochs done, selector)."""

    selector: ModelSelector
    history: List[dict] = field(default_factory=list)
    stage_index: int = 0
    epoch: int = 0  # epochs finished in the current stage
    stage_done: bool = False

    @classmethod
    def fresh(cls, es: EarlyStoppingConfig, stage_index: int = 0, history: Optional[List[dict]] = None) -> TrainState:
        return cls(
            ModelSelector(es.monitor, es.patience, es.min_delta), history if history is not None else [], stage_index
        )

    def next_stage(self, es: EarlyStoppingConfig) -> TrainState:
        """The state at the start of the following stage (same history, new selector)."""
        return TrainState.fresh(es, self.stage_index + 1, self.history)

    def to_dict(self) -> dict:
        return {
            "stage_index": self.stage_index,
            "epoch": self.epoch,
            "stage_done": self.stage_done,
            "selector": self.selector.to_dict(),
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, data: dict, es: EarlyStoppingConfig) -> TrainState:
        selector = ModelSelector.from_dict(data["selector"], es.monitor, es.patience, es.min_delta)
        return cls(
            selector, list(data["history"]), int(data["stage_index"]), int(data["epoch"]), bool(data["stage_done"])
        )

    def _stage_records(self) -> List[dict]:
        return [h for h in self.history if h["stage_index"] == self.stage_index]

    def best_global_epoch(self) -> Optional[int]:
        """Global epoch number of this stage's best validation score (None before any epoch)."""
        if not self.selector.best_epoch:
            return None
        return next((h["global_epoch"] for h in self._stage_records() if h["epoch"] == self.selector.best_epoch), None)

    def kept_global_epoch(self, restore_best: bool) -> Optional[int]:
        """Global epoch number of the weights this stage ends with: its best epoch's with ``restore_best``,
        else its last epoch's (None before any epoch)."""
        if restore_best and self.selector.best_epoch:
            return self.best_global_epoch()
        records = self._stage_records()
        return records[-1]["global_epoch"] if records else None
