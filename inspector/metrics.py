"""Classification and pass/fail metrics from labels and class probabilities, in plain numpy.

Training, calibration and evaluation report the same numbers from the same code, and the edge side can
use it without TensorFlow. Two views of one prediction:

* per class: confusion matrix (rows = true class, columns = predicted class), precision, recall, F1;
* pass/fail: the defect score ``1 - p(good)`` against a threshold. An *escape* is a defective part that
  passes (the costly error on a line), a *false reject* is a good part that fails. ROC AUC of the defect
  score says how well any threshold can separate the two.

Example:
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> report = classification_report(probs, [0, 1, 1], labels=["good", "dent"], good_class="good")
    >>> report["pass_fail"]["escapes"], report["confusion_matrix"]
    (1, [[1, 0], [1, 1]])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import numpy.typing as npt

from inspector.decision import defect_score


def confusion_matrix(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int) -> np.ndarray:
    """``cm[i, j]`` = number of samples of true class ``i`` predicted as class ``j``."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    for name, y in (("label", y_true), ("prediction", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} outside 0..{n_classes - 1}")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: float, den: float) -> float:
    """Zero when the denominator is zero (no prediction / no sample of that class), as sklearn does."""
    return float(num) / float(den) if den else 0.0


def per_class_prf(cm: np.ndarray, labels: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """Precision, recall, F1 and support of every class from a confusion matrix."""
    cm = np.asarray(cm)
    out = {}
    for i, label in enumerate(labels):
        tp = cm[i, i]
        precision = _ratio(tp, cm[:, i].sum())
        recall = _ratio(tp, cm[i, :].sum())
        f1 = _ratio(2 * precision * recall, precision + recall)
        out[label] = {"precision": precision, "recall": recall, "f1": f1, "support": int(cm[i, :].sum())}
    return out


def roc_auc(scores: npt.ArrayLike, positive: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count one half); NaN when one side is empty."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positive = np.asarray(positive, dtype=bool).ravel()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Average rank (1-based) of each distinct value, so tied scores share their rank.
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0
    ranks = avg_rank[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(scores: npt.ArrayLike, positive: npt.ArrayLike) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds (``score >= t`` is positive), from (0, 0)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positive = np.asarray(positive, dtype=bool).ravel()
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positive[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.array([], int)
    tps = np.cumsum(p)[last_of_value]
    fps = np.cumsum(~p)[last_of_value]
    n_pos, n_neg = max(int(p.sum()), 1), max(int((~p).sum()), 1)
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    thresholds = np.r_[np.inf, s[last_of_value]]
    return fpr, tpr, thresholds


@dataclass
class PassFail:
    """Pass/fail outcome at one threshold on the defect score."""

    threshold: float
    defects: int
    goods: int
    escapes: int
    false_rejects: int
    escape_rate: float
    false_reject_rate: float
    roc_auc: float

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def pass_fail(scores: npt.ArrayLike, is_defect: npt.ArrayLike, threshold: float = 0.5) -> PassFail:
    """Escapes (defect with score < threshold) and false rejects (good with score >= threshold)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    is_defect = np.asarray(is_defect, dtype=bool).ravel()
    fails = scores >= threshold
    defects, goods = int(is_defect.sum()), int((~is_defect).sum())
    escapes = int((is_defect & ~fails).sum())
    false_rejects = int((~is_defect & fails).sum())
    return PassFail(
        threshold=float(threshold),
        defects=defects,
        goods=goods,
        escapes=escapes,
        false_rejects=false_rejects,
        escape_rate=_ratio(escapes, defects),
        false_reject_rate=_ratio(false_rejects, goods),
        roc_auc=roc_auc(scores, is_defect),
    )


def classification_report(
    probs: np.ndarray,
    y_true: npt.ArrayLike,
    labels: Sequence[str],
    good_class: str,
    threshold: float = 0.5,
) -> Dict[str, Any]:
    """Everything a run reports about one split, JSON-ready (NaN AUC becomes ``None``)."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    labels = list(labels)
    if probs.ndim != 2 or probs.shape[1] != len(labels) or probs.shape[0] != len(y_true):
        raise ValueError(
            f"probabilities of shape {probs.shape} do not match {len(y_true)} labels over {len(labels)} classes"
        )
    good = labels.index(good_class)
    y_pred = probs.argmax(axis=1) if len(y_true) else np.zeros(0, np.int64)
    cm = confusion_matrix(y_true, y_pred, len(labels))
    prf = per_class_prf(cm, labels)
    pf = pass_fail(defect_score(probs, good), y_true != good, threshold).to_dict()
    if np.isnan(pf["roc_auc"]):
        pf["roc_auc"] = None
    present = [v for v in prf.values() if v["support"] > 0]
    return {
        "samples": int(len(y_true)),
        "accuracy": _ratio(np.trace(cm), cm.sum()),
        "macro_f1": float(np.mean([v["f1"] for v in present])) if present else 0.0,
        "confusion_matrix": cm.tolist(),
        "per_class": prf,
        "pass_fail": pf,
    }


def misclassified(probs: np.ndarray, y_true: npt.ArrayLike) -> List[int]:
    """Indices whose arg-max class differs from the label, most confident mistakes first."""
    probs = np.asarray(probs)
    y_true = np.asarray(y_true, dtype=np.int64)
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    worst_first: List[int] = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="mergesort")].tolist()
    return worst_first
