"""Compensating for class imbalance: a real line yields far more good parts than defects.

Two ways, one chosen per run and recorded in the report:

* class weights (default): the loss of a sample of class ``c`` is scaled by ``n / (k * n_c)``
  ("balanced", as in scikit-learn), so every class contributes the same total weight per epoch;
* oversampling: batches draw classes with chosen probabilities (all equal, or a set share of good parts
  with the defect classes in their natural proportions), so rare defects are seen more often.

Example:
    >>> import numpy as np
    >>> plan = plan_imbalance(np.array([0, 0, 0, 1]), ["good", "dent"], "good", "class_weights")
    >>> plan.class_weights
    [0.6666666666666666, 2.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> List[float]:
    """``n / (k * n_c)`` per class; a class absent from training gets weight 0 (it has no samples)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    total = counts.sum()
    return [float(total / (num_classes * c)) if c else 0.0 for c in counts]


def oversampling_weights(
    labels: np.ndarray, num_classes: int, good_index: int, good_fraction: Optional[float] = None
) -> List[float]:
    """Per-class draw probabilities: uniform, or ``good_fraction`` for good and the rest by frequency."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    present = counts > 0
    if good_fraction is None:
        probs = present / present.sum()
    else:
        defect_counts = counts.copy()
        defect_counts[good_index] = 0
        if defect_counts.sum() == 0 or counts[good_index] == 0:
            raise ValueError("oversampling with good_fraction needs good and defect images in training")
        probs = (1.0 - good_fraction) * defect_counts / defect_counts.sum()
        probs[good_index] = good_fraction
    return [float(p) for p in probs]


@dataclass
class ImbalancePlan:
    """What the run does about imbalance; ``to_dict`` goes into metrics.json and the report."""

    method: str
    train_counts: Dict[str, int]
    class_weights: Optional[List[float]] = None
    sampling_weights: Optional[List[float]] = None
    labels: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = {"method": self.method, "train_counts": self.train_counts}
        if self.class_weights is not None:
            out["class_weights"] = dict(zip(self.labels, self.class_weights))
        if self.sampling_weights is not None:
            out["sampling_probabilities"] = dict(zip(self.labels, self.sampling_weights))
        return out

    def describe(self) -> str:
        if self.class_weights is not None:
            parts = ", ".join(f"{l} {w:.2f}" for l, w in zip(self.labels, self.class_weights))
            return f"class weights ({parts})"
        if self.sampling_weights is not None:
            parts = ", ".join(f"{l} {p:.0%}" for l, p in zip(self.labels, self.sampling_weights))
            return f"oversampling ({parts} of each batch)"
        return "none (natural class frequencies)"


def plan_imbalance(
    train_labels: np.ndarray, labels: Sequence[str], good_class: str, method: str, good_fraction: Optional[float] = None
) -> ImbalancePlan:
    labels = list(labels)
    k = len(labels)
    counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=k)
    plan = ImbalancePlan(method=method, train_counts=dict(zip(labels, counts.tolist())), labels=labels)
    if method == "class_weights":
        plan.class_weights = balanced_class_weights(train_labels, k)
    elif method == "oversample":
        plan.sampling_weights = oversampling_weights(train_labels, k, labels.index(good_class), good_fraction)
    elif method != "none":
        raise ValueError(f"unknown imbalance method {method!r}")
    return plan
