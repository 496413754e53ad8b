"""Choosing the pass/fail threshold on the defect score, and how sure we can be of the rates it gives.

The defect score is ``1 - p(good)`` (:func:`inspector.decision.defect_score`). A part fails when its score
is at or above the threshold. The threshold is chosen on the validation split for one target:

* ``escape`` (default): the highest threshold whose escape rate (defects passed) is at most the target.
  The highest such threshold rejects the fewest good parts.
* ``false_reject``: the lowest threshold whose false-reject rate (good parts failed) is at most the target.

The threshold is placed halfway between the deciding score and the next lower (or higher) score in the
data, so the rates on the validation split are exactly those reported, with a margin either side for
score noise (e.g. quantization). An optional review band ``[threshold - margin, threshold + margin)``
sends doubtful parts to a person.

A rate measured on a few hundred images is uncertain: 0 escapes out of 60 defects is compatible with a
true escape rate of 5 %. Every rate comes with a two-sided 95 % Clopper-Pearson (exact, conservative)
interval, or Wilson's on request, and the choice reports how many defects it would take to demonstrate
the target at all (zero escapes among ``n`` defects bounds the rate below the target only for
``n >= log(alpha/2) / log(1 - target)``).

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

from inspector.decision import DecisionPolicy


class Target(str, Enum):
    ESCAPE = "escape"
    FALSE_REJECT = "false_reject"


class IntervalMethod(str, Enum):
    CLOPPER_PEARSON = "clopper-pearson"
    WILSON = "wilson"


class OperatingPointError(ValueError):
    """The threshold cannot be chosen (e.g. the validation split has no defect or no good image)."""


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (exact for the n of a validation split)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    i = np.arange(0, k + 1, dtype=np.float64)
    log_pmf = (math.lgamma(n + 1) - np.vectorize(math.lgamma)(i + 1) - np.vectorize(math.lgamma)(n - i + 1)
               + i * math.log(p) + (n - i) * math.log1p(-p))
    peak = log_pmf.max()
    return float(min(1.0, math.exp(peak) * np.exp(log_pmf - peak).sum()))


def _bisect(f, lo: float, hi: float, iterations: int = 60) -> float:
    """Root of a decreasing function ``f`` on [lo, hi]."""
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> Tuple[float, float]:
    """Exact two-sided interval of a binomial proportion ``k / n``; (0, 1) when ``n == 0``."""
    if n == 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    lower = 0.0 if k == 0 else _bisect(lambda p: alpha / 2 - (1.0 - _binom_cdf(k - 1, n, p)), 0.0, 1.0)
    upper = 1.0 if k == n else _bisect(lambda p: _binom_cdf(k, n, p) - alpha / 2, 0.0, 1.0)
    return lower, upper


def wilson(k: int, n: int, confidence: float = 0.95) -> Tuple[float, float]:
    """Wilson score interval of ``k / n``; (0, 1) when ``n == 0``."""
    if n == 0:
        return 0.0, 1.0
    z = _normal_quantile(1 - (1 - confidence) / 2)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def _normal_quantile(q: float) -> float:
    """Inverse of the standard normal CDF by bisection on ``erf`` (no SciPy on the edge)."""
    return _bisect(lambda x: q - 0.5 * (1 + math.erf(x / math.sqrt(2))), -10.0, 10.0)


def interval(k: int, n: int, method: IntervalMethod | str = IntervalMethod.CLOPPER_PEARSON,
             confidence: float = 0.95) -> Tuple[float, float]:
    method = IntervalMethod(method)
    return clopper_pearson(k, n, confidence) if method == IntervalMethod.CLOPPER_PEARSON else wilson(k, n, confidence)


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
    def of(cls, count: int, total: int, method: IntervalMethod | str = IntervalMethod.CLOPPER_PEARSON,
           confidence: float = 0.95) -> "Rate":
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

    def policy(self) -> DecisionPolicy:
        return DecisionPolicy(threshold=self.threshold, review_low=self.review_low, review_high=self.review_high)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["target"] = self.target.value
        out["interval_method"] = self.interval_method.value
        return out


def rates_at(scores: np.ndarray, is_defect: np.ndarray, policy: DecisionPolicy,
             method: IntervalMethod | str = IntervalMethod.CLOPPER_PEARSON,
             confidence: float = 0.95) -> Tuple[Rate, Rate, Rate]:
    """(escape, false reject, review) of ``policy`` on labelled scores; review parts are neither."""
    scores = np.asarray(scores, np.float64)
    is_defect = np.asarray(is_defect, bool)
    low = policy.review_low if policy.review_low is not None else policy.threshold
    high = policy.review_high if policy.review_high is not None else policy.threshold
    passed = scores < low
    failed = scores >= high
    review = ~passed & ~failed
    return (
        Rate.of(int((passed & is_defect).sum()), int(is_defect.sum()), method, confidence),
        Rate.of(int((failed & ~is_defect).sum()), int((~is_defect).sum()), method, confidence),
        Rate.of(int(review.sum()), len(scores), method, confidence),
    )


def _between(upper: float, scores: np.ndarray) -> float:
    """Halfway between ``upper`` and the largest score strictly below it (or 0)."""
    below = scores[scores < upper]
    return float((upper + (below.max() if below.size else 0.0)) / 2)


def choose_threshold(
    scores: Sequence[float],
    is_defect: Sequence[bool],
    target: Target | str = Target.ESCAPE,
    rate: float = 0.005,
    review_margin: float = 0.0,
    method: IntervalMethod | str = IntervalMethod.CLOPPER_PEARSON,
    confidence: float = 0.95,
) -> OperatingPoint:
    """The threshold meeting ``rate`` for ``target`` on these scores (see the module docstring)."""
    target, method = Target(target), IntervalMethod(method)
    scores = np.asarray(scores, np.float64).ravel()
    is_defect = np.asarray(is_defect, bool).ravel()
    if not 0.0 <= rate < 1.0:
        raise OperatingPointError(f"target rate must be in [0, 1), got {rate}")
    if review_margin < 0:
        raise OperatingPointError(f"review margin must be >= 0, got {review_margin}")
    defects, goods = np.sort(scores[is_defect]), np.sort(scores[~is_defect])
    if defects.size == 0 or goods.size == 0:
        raise OperatingPointError(
            f"cannot choose a threshold: the data has {defects.size} defect and {goods.size} good images; "
            "the validation split needs both"
        )
    if target == Target.ESCAPE:
        allowed = int(math.floor(rate * defects.size + 1e-9))
        if allowed >= defects.size:
            threshold = 1.0
        else:
            # Exactly `allowed` defect scores lie below defects[allowed] (ties fail together).
            threshold = _between(defects[allowed], scores)
    else:
        allowed = int(math.floor(rate * goods.size + 1e-9))
        if allowed >= goods.size:
            threshold = 0.0
        else:
            deciding = goods[goods.size - 1 - allowed]  # the highest good score that must pass
            above = scores[scores > deciding]
            threshold = float((deciding + above.min()) / 2) if above.size else float(np.nextafter(deciding, 2.0))
    threshold = float(min(max(threshold, 0.0), 1.0))
    low = high = None
    if review_margin > 0:
        low, high = max(0.0, threshold - review_margin), min(1.0, threshold + review_margin)
    policy = DecisionPolicy(threshold=threshold, review_low=low, review_high=high)
    escape, false_reject, review = rates_at(scores, is_defect, policy, method, confidence)
    needed = samples_to_demonstrate(rate, confidence) if target == Target.ESCAPE else None
    note = ""
    if target == Target.ESCAPE and needed is not None and defects.size < needed:
        note = (f"{defects.size} defect images cannot demonstrate an escape rate of {100 * rate:.2f}%: "
                f"even 0 escapes leave a {100 * escape.high:.1f}% upper bound; about {needed} defects are needed")
    elif target == Target.FALSE_REJECT:
        needed_goods = samples_to_demonstrate(rate, confidence)
        if needed_goods is not None and goods.size < needed_goods:
            note = (f"{goods.size} good images cannot demonstrate a false-reject rate of {100 * rate:.2f}%; "
                    f"about {needed_goods} are needed")
    return OperatingPoint(target, float(rate), threshold, low, high, escape, false_reject, review, method,
                          confidence, needed, note)
