"""Which epoch is the best, and when to stop: judged on the validation pass/fail score.

A stage keeps its last epoch's weights by default (``early_stopping.restore_best`` keeps the best
epoch's, ``early_stopping.patience`` stops early); the best epoch is reported either way, and a best
epoch of 1 tells the deployability verdict that training never improved the model.

The line cares how well the defect score ``1 - p(good)`` separates good parts from defects, not about a
cross-entropy that label smoothing flattens (a run whose validation AUC rose from 0.6 to 0.97 while its
loss stayed flat kept epoch 1 under loss-based early stopping). So an epoch is better when, in order:

1. its validation ROC AUC is higher by more than ``min_delta``;
2. at an equal AUC (small validation sets reach 1.0 early), fewer defects escape at the threshold that
   keeps false rejects within the line's budget;
3. then a lower plain validation cross-entropy (more confident, better separated scores).

``monitor=val_loss`` keeps the old behaviour (lowest validation loss) for comparison. Pure Python, so the
rule is tested on scripted metric sequences without training anything.

Example:
    >>> s = ModelSelector(Monitor.VAL_AUC, patience=2)
    >>> [s.update(i + 1, EpochScore(auc, 0.5, 0.69)) for i, auc in enumerate([0.6, 0.8, 0.79, 0.78])]
    [True, True, False, False]
    >>> s.best_epoch, s.should_stop
    (2, True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np

from inspector.metrics import roc_auc
from inspector.operating_point import Target, threshold_for
from training.config import Monitor


@dataclass(frozen=True)
class EpochScore:
    """What one epoch's weights achieve on the validation split."""

    auc: Optional[float]  # pass/fail ROC AUC of the defect score; None without both kinds of parts
    escapes: Optional[float]  # escape rate at the false-reject budget's threshold
    loss: float  # plain cross-entropy (no label smoothing, no class weights)

    @classmethod
    def measure(cls, probs: np.ndarray, labels: np.ndarray, good_index: int, false_reject_budget: float) -> EpochScore:
        probs = np.asarray(probs, np.float64)
        labels = np.asarray(labels, np.int64)
        loss = (
            float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0))))
            if len(labels)
            else float("nan")
        )
        scores, is_defect = 1.0 - probs[:, good_index], labels != good_index
        if not is_defect.any() or is_defect.all():
            return cls(None, None, loss)
        threshold = threshold_for(scores, is_defect, Target.FALSE_REJECT, false_reject_budget)
        escapes = float((scores[is_defect] < threshold).mean())
        return cls(roc_auc(scores, is_defect), escapes, loss)


def _finite(value: Optional[float]) -> bool:
    return value is not None and not math.isnan(value)


class ModelSelector:
    """Best epoch so far and the patience counter of one training stage."""

    def __init__(
        self,
        monitor: Monitor,
        patience: Optional[int],
        min_delta: float = 0.0,
        best: Optional[EpochScore] = None,
        best_epoch: int = 0,
        wait: int = 0,
    ):
        self.monitor, self.patience, self.min_delta = Monitor(monitor), patience, min_delta
        self.best, self.best_epoch, self.wait = best, best_epoch, wait

    def better(self, score: EpochScore, best: EpochScore) -> bool:
        if self.monitor is Monitor.VAL_LOSS:
            return _finite(score.loss) and (not _finite(best.loss) or score.loss < best.loss - self.min_delta)
        if not _finite(score.auc):
            return not _finite(best.auc) and _finite(score.loss) and (not _finite(best.loss) or score.loss < best.loss)
        if not _finite(best.auc) or score.auc > best.auc + self.min_delta:
            return True
        if score.auc < best.auc - self.min_delta or (self.min_delta == 0 and score.auc != best.auc):
            return False
        if score.escapes != best.escapes:
            return score.escapes < best.escapes
        return score.loss < best.loss

    def update(self, epoch: int, score: EpochScore) -> bool:
        """Record ``epoch``'s score; True when it is the new best (keep its weights)."""
        if self.best is None or self.better(score, self.best):
            self.best, self.best_epoch, self.wait = score, epoch, 0
            return True
        self.wait += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True after ``patience`` epochs without a better one (never without a patience)."""
        return self.patience is not None and self.wait >= self.patience

    def describe(self) -> str:
        if self.best is None:
            return "no epoch scored"
        if self.monitor is Monitor.VAL_LOSS:
            return f"best val_loss {self.best.loss:.4f} at epoch {self.best_epoch}"
        auc = "-" if not _finite(self.best.auc) else f"{self.best.auc:.4f}"
        esc = "-" if self.best.escapes is None else f"{100 * self.best.escapes:.1f}%"
        return f"best val AUC {auc} (escapes {esc} at the false-reject budget) at epoch {self.best_epoch}"

    def to_dict(self) -> dict:
        return {"best": asdict(self.best) if self.best else None, "best_epoch": self.best_epoch, "wait": self.wait}

    @classmethod
    def from_dict(cls, data: dict, monitor: Monitor, patience: Optional[int], min_delta: float) -> ModelSelector:
        best = EpochScore(**data["best"]) if data.get("best") else None
        return cls(monitor, patience, min_delta, best, data.get("best_epoch", 0), data.get("wait", 0))


def replay(
    scores: Sequence[EpochScore], monitor: Monitor, patience: Optional[int], min_delta: float = 0.0
) -> ModelSelector:
    """The selector after feeding ``scores`` epoch by epoch, stopping where training would stop."""
    selector = ModelSelector(monitor, patience, min_delta)
    for epoch, score in enumerate(scores, start=1):
        selector.update(epoch, score)
        if selector.should_stop:
            break
    return selector
