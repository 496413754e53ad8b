"""The rule that turns labelled defect scores into a decision policy: one rule for training and calibration.

``inspector train`` applies it to the validation (or out-of-fold) scores of the float model and records
the policy in run.json; ``inspector calibrate`` carries that policy into the bundle, so the training
report, the calibration report, ``inspector evaluate`` and the station all decide at the same threshold.

Targets (a part fails when its defect score ``1 - p(good)`` is at or above the threshold):

* ``budget`` (the default): the threshold, or review band, most likely to meet the line's budget for
  escapes, false rejects and review on new parts. A threshold set where one rate just meets its budget on
  a validation split of 59 defects and 143 good parts meets the budget on the next such sample less than
  half the time; this rule keeps every rate as far inside its budget as the scores allow. Each rate is
  estimated from a kernel-smoothed score distribution per class (on the logit of the score, so a
  threshold between two scores is not judged by whichever image happens to lie nearest), and the chance
  that the true rate is within budget from a Beta posterior (Jeffreys prior) on that smoothed count; the
  point maximizes the product of the three chances, except that of the points within 1 % of the best
  chance the one sending the fewest parts to review wins (review costs a person's time); the note gives
  the chance (bench/operating_point.py measures the rule);
* ``escape``: the highest threshold whose escape rate (defects passed) is at most the target rate; the
  highest such threshold rejects the fewest good parts;
* ``false_reject``: the lowest threshold whose false-reject rate (good parts failed) is at most the target.

For the two rate targets the threshold sits halfway between the deciding score and its neighbour, so the
rates on the data are exactly those reported, with a margin either side for score noise (e.g. quantization).

When the data cannot support an escape target within the line's false-reject budget (a few low-scored
defects would make the zero-escape threshold fail most good parts), the rule does not hand the line an
unusable threshold: parts between the escape-target threshold and the false-reject-budget threshold go to
review, so automatic decisions meet both, and the note says how many parts that sends to a person. With
the line's review budget given, the band holds at most that share of parts: its lower edge rises until it
does (the highest-scored parts below the fail line stay in review), and the note says how many defects
the validation scores then let pass. A band that swallowed half the line because of one defect scored
like a good part would only move the problem from the gate to the people at the review station.

Example:
    >>> import numpy as np
    >>> scores = np.array([0.05, 0.1, 0.2, 0.7, 0.8, 0.9]); defect = np.array([0, 0, 0, 1, 1, 1], bool)
    >>> round(choose_policy(scores, defect, Target.ESCAPE, 0.0)[0].threshold, 2)
    0.45
"""

from __future__ import annotations

import math
from enum import Enum
from typing import NamedTuple, Optional, Tuple

import numpy as np
import numpy.typing as npt
from pydantic import Field

from inspector.config import StrictModel
from inspector.decision import DecisionPolicy


class Target(str, Enum):
    BUDGET = "budget"
    ESCAPE = "escape"
    FALSE_REJECT = "false_reject"

    def describe(self, rate: float) -> str:
        """The target in words for reports, e.g. "an escape rate of 0.5%"."""
        if self is Target.BUDGET:
            return "the line's budget"
        kind = "an escape" if self is Target.ESCAPE else "a false-reject"
        return f"{kind} rate of {100 * rate:g}%"


class PolicyChoice(NamedTuple):
    """A chosen policy, what the rule says of it, and (budget target) its estimated chance of meeting the
    line's budget."""

    policy: DecisionPolicy
    note: str
    chance: Optional[float] = None


class OperatingPointError(ValueError):
    """The threshold cannot be chosen (e.g. the scores hold no defect or no good image)."""


class OperatingPointConfig(StrictModel):
    """How the pass/fail threshold is chosen."""

    target: Target = Field(
        Target.BUDGET,
        description="budget: the point most likely to meet the line's budget; escape or false_reject: "
        "that rate at target_rate",
    )
    target_rate: float = Field(
        0.005, ge=0, lt=1, description="Target rate on the scores it is chosen on (escape and false_reject)"
    )
    review_margin: float = Field(0.0, ge=0, lt=1, description="Review band threshold +- margin on the defect score")
    review_when_unsupported: bool = Field(
        True,
        description="When the target would exceed the false-reject budget, send the parts in between "
        "to review instead (escape target only)",
    )


def _between(upper: float, scores: np.ndarray) -> float:
    """Halfway between ``upper`` and the largest score strictly below it (or 0)."""
    below = scores[scores < upper]
    return float((upper + (below.max() if below.size else 0.0)) / 2)


def threshold_for(scores: npt.ArrayLike, is_defect: npt.ArrayLike, target: Target | str, rate: float) -> float:
    """The threshold meeting ``rate`` for ``target`` on these scores (see the module docstring)."""
    target = Target(target)
    if target is Target.BUDGET:
        raise OperatingPointError("the budget target has no single rate: use choose_policy with the line's budget")
    scores = np.asarray(scores, np.float64).ravel()
    is_defect = np.asarray(is_defect, bool).ravel()
    if not 0.0 <= rate < 1.0:
        raise OperatingPointError(f"target rate must be in [0, 1), got {rate}")
    defects, goods = np.sort(scores[is_defect]), np.sort(scores[~is_defect])
    if defects.size == 0 or goods.size == 0:
        raise OperatingPointError(
            f"cannot choose a threshold: the data has {defects.size} defect and {goods.size} good images; it needs both"
        )
    if target == Target.ESCAPE:
        allowed = int(math.floor(rate * defects.size + 1e-9))
        # Exactly `allowed` defect scores lie below defects[allowed] (ties fail together).
        threshold = 1.0 if allowed >= defects.size else _between(defects[allowed], scores)
    else:
        allowed = int(math.floor(rate * goods.size + 1e-9))
        if allowed >= goods.size:
            threshold = 0.0
        else:
            deciding = goods[goods.size - 1 - allowed]  # the highest good score that must pass
            above = scores[scores > deciding]
            threshold = float((deciding + above.min()) / 2) if above.size else float(np.nextafter(deciding, 2.0))
    return float(min(max(threshold, 0.0), 1.0))


def choose_policy(
    scores: npt.ArrayLike,
    is_defect: npt.ArrayLike,
    target: Target | str = Target.ESCAPE,
    rate: float = 0.005,
    review_margin: float = 0.0,
    max_false_reject_rate: Optional[float] = None,
    max_review_rate: Optional[float] = None,
    max_escape_rate: Optional[float] = None,
) -> PolicyChoice:
    """The policy, a note and (budget) its chance. The ``budget`` target needs all three ``max_*`` rates.
    ``review_margin`` > 0 makes a band ``threshold +- margin``; otherwise, with ``max_false_reject_rate``,
    an escape target the data cannot meet within that budget becomes a review band of at most
    ``max_review_rate`` of the parts (the note says what it achieves)."""
    target = Target(target)
    if review_margin < 0:
        raise OperatingPointError(f"review margin must be >= 0, got {review_margin}")
    scores = np.asarray(scores, np.float64).ravel()
    is_defect = np.asarray(is_defect, bool).ravel()
    if target is Target.BUDGET:
        if max_escape_rate is None or max_false_reject_rate is None or max_review_rate is None:
            raise OperatingPointError("the budget target needs the line's escape, false-reject and review budgets")
        policy, chance = budget_policy(scores, is_defect, max_escape_rate, max_false_reject_rate, max_review_rate)
        note = (
            f"the point most likely to meet the line's budget (escapes <= {100 * max_escape_rate:g}%, false "
            f"rejects <= {100 * max_false_reject_rate:g}%, review <= {100 * max_review_rate:g}%): an estimated "
            f"{100 * chance:.0f}% chance, from these scores, that its true rates are all within it"
        )
        if chance < 0.5:
            note += " (less than even: these scores do not support the budget)"
        if review_margin == 0:
            return PolicyChoice(policy, note, chance)
        threshold = policy.threshold
    else:
        threshold, note, chance = threshold_for(scores, is_defect, target, rate), "", None
    if review_margin > 0:
        low, high = max(0.0, threshold - review_margin), min(1.0, threshold + review_margin)
        return PolicyChoice(DecisionPolicy(threshold=threshold, review_low=low, review_high=high), note, chance)
    goods = ~is_defect
    if target == Target.ESCAPE and max_false_reject_rate is not None:
        rejects = float((scores[goods] >= threshold).mean())
        fail_line = threshold_for(scores, is_defect, Target.FALSE_REJECT, max_false_reject_rate)
        if rejects > max_false_reject_rate and fail_line > threshold:
            low = _review_edge(scores, threshold, fail_line, max_review_rate)
            review = float(((scores >= low) & (scores < fail_line)).mean())
            note = (
                f"an escape rate of {100 * rate:.2f}% would fail {100 * rejects:.1f}% of good parts "
                f"(budget {100 * max_false_reject_rate:g}%): "
            )
            if low == threshold:
                note += (
                    f"parts scoring {threshold:.4f}-{fail_line:.4f} go to review ({100 * review:.1f}% of these "
                    "parts), so automatic decisions meet both"
                )
            else:
                escapes = int((scores[is_defect] < low).sum())
                note += (
                    f"parts scoring {low:.4f}-{fail_line:.4f} go to review ({100 * review:.1f}% of these parts, "
                    f"the review budget {100 * (max_review_rate or 0):g}%), which lets {escapes} of "
                    f"{int(is_defect.sum())} defects here pass"
                )
            if low >= fail_line:
                return PolicyChoice(DecisionPolicy(threshold=fail_line), note)
            return PolicyChoice(DecisionPolicy(threshold=fail_line, review_low=low, review_high=fail_line), note)
    return PolicyChoice(DecisionPolicy(threshold=threshold), note)


# The budget rule works on the logit of the defect score, where both classes' scores spread out enough for a
# kernel estimate; clipping keeps scores of exactly 0 or 1 finite.
_LOGIT_CLIP = 1e-6
_GRID = 160  # candidate band edges, evenly spaced in logit over the scores' range
_MIN_BANDWIDTH = 0.05  # logit units: a class whose scores are all equal is still a (narrow) distribution
_MIN_BUDGET = 1e-6  # a zero budget still ranks points by how few such parts they let through
_CHANCE_TOLERANCE = 0.01  # relative: a review band must buy more than this much chance


def budget_policy(
    scores: npt.ArrayLike,
    is_defect: npt.ArrayLike,
    max_escape_rate: float,
    max_false_reject_rate: float,
    max_review_rate: float,
) -> Tuple[DecisionPolicy, float]:
    """(policy, chance): the plain threshold or review band ``[low, high)`` whose escape, false-reject and
    review rates are most likely all within their budgets, and that estimated chance (module docstring).

    SciPy comes with the train extra; only training and calibration choose a threshold, never the station."""
    from scipy.special import betainc, betaincc, ndtr

    scores = np.asarray(scores, np.float64).ravel()
    is_defect = np.asarray(is_defect, bool).ravel()
    defects, goods = int(is_defect.sum()), int((~is_defect).sum())
    if defects == 0 or goods == 0:
        raise OperatingPointError(
            f"cannot choose a threshold: the data has {defects} defect and {goods} good images; it needs both"
        )
    clipped = np.clip(scores, _LOGIT_CLIP, 1 - _LOGIT_CLIP)
    x = np.log(clipped / (1 - clipped))
    cuts = np.linspace(x.min() - 1, x.max() + 1, _GRID)

    def share_below(values: np.ndarray) -> np.ndarray:
        """Kernel-smoothed share of ``values`` below each cut (Gaussian kernel, Silverman's rule-of-thumb
        bandwidth)."""
        bandwidth = max(1.06 * float(values.std()) * values.size**-0.2, _MIN_BANDWIDTH)
        kernels = np.asarray(ndtr((cuts[:, None] - values[None, :]) / bandwidth), np.float64)
        shares: np.ndarray = kernels.mean(axis=1)
        return shares

    def log_chance(rate: np.ndarray, parts: int, budget: float) -> np.ndarray:
        """log P(true rate <= budget) under Beta(k + 1/2, n - k + 1/2) for the smoothed count k."""
        a, b, budget = rate * parts + 0.5, (1 - rate) * parts + 0.5, max(budget, _MIN_BUDGET)
        tail = np.asarray(betaincc(a, b, budget), np.float64)  # P(true rate > budget); log1p keeps tiny tails apart
        with np.errstate(divide="ignore"):
            head = np.log(np.asarray(betainc(a, b, budget), np.float64))
        return np.where(tail < 0.5, np.log1p(-np.minimum(tail, 0.5)), head)

    escape = share_below(x[is_defect])  # passed below the lower edge
    good_below = share_below(x[~is_defect])  # 1 - false reject at the upper edge
    all_below = (escape * defects + good_below * goods) / (defects + goods)
    low_edges, high_edges = np.triu_indices(_GRID)  # every band [low, high), low == high a plain threshold
    review = np.clip(all_below[high_edges] - all_below[low_edges], 0.0, 1.0)
    objective = (
        log_chance(escape, defects, max_escape_rate)[low_edges]
        + log_chance(1 - good_below, goods, max_false_reject_rate)[high_edges]
        + log_chance(review, defects + goods, max_review_rate)
    )
    # Review costs a person's time: of the points within 1 % of the best chance, those sending the fewest
    # parts to review (plain thresholds when one is that close), then the likeliest of those. Where the
    # chance saturates (classes far apart) many points tie exactly: the middle of them, not the first,
    # which would sit against the good parts' scores.
    near = np.flatnonzero(objective >= objective.max() + np.log1p(-_CHANCE_TOLERANCE))
    fewest = near[review[near] <= review[near].min() + 1e-12]
    plain = fewest[low_edges[fewest] == high_edges[fewest]]
    fewest = plain if plain.size else fewest
    likeliest = fewest[objective[fewest] >= objective[fewest].max() - 1e-12]
    best = int(likeliest[len(likeliest) // 2])
    low, high = low_edges[best], high_edges[best]
    chance = float(np.exp(objective[best]))
    edge_low, edge_high = (float(1 / (1 + np.exp(-cuts[i]))) for i in (low, high))
    if low == high:
        return DecisionPolicy(threshold=edge_high), chance
    return DecisionPolicy(threshold=edge_high, review_low=edge_low, review_high=edge_high), chance


def _review_edge(scores: np.ndarray, low: float, high: float, max_share: Optional[float]) -> float:
    """The lower edge of the review band ``[edge, high)``: ``low``, raised until the band holds at most
    ``max_share`` of ``scores`` (the highest scores below ``high`` are the ones kept in review)."""
    band = (scores >= low) & (scores < high)
    if max_share is None or band.mean() <= max_share:
        return low
    allowed = int(math.floor(max_share * scores.size + 1e-9))
    below = np.sort(scores[scores < high])[::-1]
    if allowed == 0 or below.size == 0:
        return high
    return max(low, _between(below[min(allowed, below.size) - 1], scores))


def outcomes(scores: npt.ArrayLike, policy: DecisionPolicy) -> Tuple[np.ndarray, np.ndarray]:
    """(passed, failed) masks of ``policy`` on scores; a part in the review band is neither."""
    scores = np.asarray(scores, np.float64)
    low = policy.review_low if policy.review_low is not None else policy.threshold
    high = policy.review_high if policy.review_high is not None else policy.threshold
    return scores < low, scores >= high
