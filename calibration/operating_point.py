"""How sure we can be of the rates a pass/fail threshold gives, and the operating point with its intervals.

The threshold itself comes from the one rule in :mod:`inspector.operating_point` (shared with training, so
every report and the bundle use the same threshold). This module adds what a person signing off needs:
a rate measured on a few hundred images is uncertain, 0 escapes out of 60 defects is compatible with a
true escape rate of 5 %. Every rate comes with a two-sided 95 % Clopper-Pearson (exact, conservative)
interval, or Wilson's on request (SciPy's ``binomtest(...).proportion_ci``), and the choice reports how
many defects it would take to demonstrate the target at all (zero escapes among ``n`` defects bounds the
rate below the target only for ``n >= log(alpha/2) / log(1 - target)``).

Example:
    >>> import numpy as np
    >>> scores = np.array([0.05, 0.1, 0.2, 0.7, 0.8, 0.9]); defect = np.array([0, 0, 0, 1, 1, 1], bool)
    >>> op = choose_threshold(scores, defect, target="escape", rate=0.0)
    >>> round(op.threshold, 2), op.escape.count, op.false_reject.count
    (0.45, 0, 0)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy.stats import binomtest

from inspector.decision import DecisionPolicy
from inspector.operating_point import OperatingPointError, Target, choose_policy, outcomes

__all__ = [
    "IntervalMethod",
    "OperatingPoint",
    "OperatingPointError",
    "Rate",
    "Target",
    "choose_threshold",
    "interval",
    "operating_point",
    "rates_at",
    "samples_to_demonstrate",
]


class IntervalMethod(str, Enum):
    CLOPPER_PEARSON = "clopper-pearson"
    WILSON = "wilson"


def interval(
    k: int, n: int, method: IntervalMethod | str = IntervalMethod.CLOPPER_PEARSON, confidence: float = 0.95
) -> Tuple[float, float]:
    """Two-sided interval of a binomial proportion ``k / n``; (0, 1) when ``n == 0``."""
    if n == 0:
        return 0.0, 1.0
    name = "exact" if IntervalMethod(method) == IntervalMethod.CLOPPER_PEARSON else "wilson"
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method=name)
    return float(ci.low), float(ci.high)


def samples_to_demonstrate(rate: float, confidence: float = 0.95) -> Optional[int]:
    """Smallest n for which 0 events out of n puts the interval's upper end at or below ``rate``."""
    if rate <= 0.0:
        return None
    if rate >= 1.0:
        return 1
    return int(math.ceil(math.log((1 - confidence) / 2) / math.log1p(-rate)))


@dataclass(frozen=True)
class Rate:
    """An observed rate ``count / total`` with its confidence interval."""

    count: int
    total: int
    rate: float
    low: float
    high: float

    @classmethod
    def of(
        cls,
        count: int,
        total: int,
        method: IntervalMethod | str = IntervalMethod.CLOPPER_PEARSON,
        confidence: float = 0.95,
    ) -> Rate:
        low, high = interval(count, total, method, confidence)
        return cls(int(count), int(total), count / total if total else 0.0, low, high)

    def __str__(self) -> str:
        return f"{100 * self.rate:.2f}% ({self.count}/{self.total}, 95% CI {100 * self.low:.2f}-{100 * self.high:.2f}%)"


@dataclass(frozen=True)
class OperatingPoint:
    """A chosen threshold (and review band) with the rates it achieves on the data it was chosen on."""

    target: Target
    target_rate: float
    threshold: float
    review_low: Optional[float]
    review_high: Optional[float]
    escape: Rate  # defects passed automatically (score below the review band / threshold)
    false_reject: Rate  # good parts failed automatically (score at or above the band / threshold)
    review: Rate  # parts sent to review (all parts), 0/N without a band
    interval_method: IntervalMethod
    confidence: float
    defects_needed: Optional[int]  # defects for 0 escapes to demonstrate the target at this confidence
    note: str = ""
    chance: Optional[float] = None  # budget target: estimated chance of meeting the line's budget

    def policy(self) -> DecisionPolicy:
        return DecisionPolicy(threshold=self.threshold, review_low=self.review_low, review_high=self.review_high)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["target"] = self.target.value
        out["interval_method"] = self.interval_method.value
        return out


def rates_at(
    scores: np.ndarray,
    is_defect: np.ndarray,
    policy: DecisionPolicy,
    method: IntervalMethod | str = IntervalMethod.CLOPPER_PEARSON,
    confidence: float = 0.95,
) -> Tuple[Rate, Rate, Rate]:
    """(escape, false reject, review) of ``policy`` on labelled scores; review parts are neither."""
    is_defect = np.asarray(is_defect, bool)
    passed, failed = outcomes(scores, policy)
    review = ~passed & ~failed
    return (
        Rate.of(int((passed & is_defect).sum()), int(is_defect.sum()), method, confidence),
        Rate.of(int((failed & ~is_defect).sum()), int((~is_defect).sum()), method, confidence),
        Rate.of(int(review.sum()), len(is_defect), method, confidence),
    )


def choose_threshold(
    scores: Sequence[float],
    is_defect: Sequence[bool],
    target: Target | str = Target.ESCAPE,
    rate: float = 0.005,
    review_margin: float = 0.0,
    method: IntervalMethod | str = IntervalMethod.CLOPPER_PEARSON,
    confidence: float = 0.95,
    max_false_reject_rate: Optional[float] = None,
    max_review_rate: Optional[float] = None,
    max_escape_rate: Optional[float] = None,
) -> OperatingPoint:
    """The policy of :func:`inspector.operating_point.choose_policy` with its rates and intervals."""
    target, method = Target(target), IntervalMethod(method)
    scores = np.asarray(scores, np.float64).ravel()
    is_defect = np.asarray(is_defect, bool).ravel()
    choice = choose_policy(
        scores, is_defect, target, rate, review_margin, max_false_reject_rate, max_review_rate, max_escape_rate
    )
    return operating_point(
        scores, is_defect, choice.policy, target, rate, method, confidence, choice.note, choice.chance
    )


def operating_point(
    scores: Sequence[float],
    is_defect: Sequence[bool],
    policy: DecisionPolicy,
    target: Target | str,
    rate: float,
    method: IntervalMethod | str = IntervalMethod.CLOPPER_PEARSON,
    confidence: float = 0.95,
    note: str = "",
    chance: Optional[float] = None,
) -> OperatingPoint:
    """An :class:`OperatingPoint` for a given ``policy`` (e.g. the one a training run chose) on these scores."""
    target, method = Target(target), IntervalMethod(method)
    scores = np.asarray(scores, np.float64).ravel()
    is_defect = np.asarray(is_defect, bool).ravel()
    escape, false_reject, review = rates_at(scores, is_defect, policy, method, confidence)
    needed = samples_to_demonstrate(rate, confidence) if target == Target.ESCAPE else None
    notes = [note] if note else []
    defects, goods = int(is_defect.sum()), int((~is_defect).sum())
    if target == Target.ESCAPE and needed is not None and defects < needed:
        notes.append(
            f"{defects} defect images cannot demonstrate an escape rate of {100 * rate:.2f}%: "
            f"even 0 escapes leave a {100 * escape.high:.1f}% upper bound; about {needed} defects are needed"
        )
    elif target == Target.FALSE_REJECT:
        needed_goods = samples_to_demonstrate(rate, confidence)
        if needed_goods is not None and goods < needed_goods:
            notes.append(
                f"{goods} good images cannot demonstrate a false-reject rate of {100 * rate:.2f}%; "
                f"about {needed_goods} are needed"
            )
    return OperatingPoint(
        target,
        float(rate),
        policy.threshold,
        policy.review_low,
        policy.review_high,
        escape,
        false_reject,
        review,
        method,
        confidence,
        needed,
        "; ".join(notes),
        chance,
    )
