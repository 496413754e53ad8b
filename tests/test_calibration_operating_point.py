"""Threshold selection meets its target on the data it was chosen on; intervals match known values."""

import math

import numpy as np
import pytest

from calibration.operating_point import (
    OperatingPointError,
    choose_threshold,
    interval,
    rates_at,
    samples_to_demonstrate,
)
from inspector.decision import DecisionPolicy


def _data(seed, n_good=300, n_defect=120, overlap=0.25):
    rng = np.random.default_rng(seed)
    good = np.clip(rng.beta(1.5, 6, n_good) + overlap * rng.random(n_good), 0, 1)
    defect = np.clip(rng.beta(5, 2, n_defect) - overlap * rng.random(n_defect), 0, 1)
    scores = np.r_[good, defect]
    return scores, np.r_[np.zeros(n_good, bool), np.ones(n_defect, bool)]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rate", [0.0, 0.005, 0.02, 0.1])
def test_escape_target_met_and_threshold_is_the_highest_that_meets_it(seed, rate):
    scores, is_defect = _data(seed)
    op = choose_threshold(scores, is_defect, "escape", rate)
    escapes = int(((scores < op.threshold) & is_defect).sum())
    assert escapes == op.escape.count
    assert escapes <= math.floor(rate * is_defect.sum())
    assert op.escape.rate <= rate + 1e-12
    # Any higher threshold that changes a decision passes one more defect than allowed.
    next_defect = np.sort(scores[is_defect & (scores >= op.threshold)])[0]
    assert ((scores < next_defect + 1e-9) & is_defect).sum() > math.floor(rate * is_defect.sum())
    # False rejects are counted from the same threshold.
    assert op.false_reject.count == int(((scores >= op.threshold) & ~is_defect).sum())


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.05])
def test_false_reject_target_met(rate):
    scores, is_defect = _data(7)
    op = choose_threshold(scores, is_defect, "false_reject", rate)
    false_rejects = int(((scores >= op.threshold) & ~is_defect).sum())
    assert false_rejects <= math.floor(rate * (~is_defect).sum())
    assert op.false_reject.count == false_rejects
    # Lowering the threshold to the next good score below would reject one good part too many.
    lower = np.sort(scores[~is_defect & (scores < op.threshold)])[-1]
    assert ((scores >= lower) & ~is_defect).sum() > math.floor(rate * (~is_defect).sum())


def test_threshold_has_margin_to_the_scores_either_side():
    scores = np.array([0.1, 0.2, 0.6, 0.8])
    op = choose_threshold(scores, np.array([0, 0, 1, 1], bool), "escape", 0.0)
    assert op.threshold == pytest.approx(0.4)


def test_review_band_rates():
    scores = np.array([0.1, 0.3, 0.45, 0.55, 0.7, 0.9])
    is_defect = np.array([0, 0, 1, 0, 1, 1], bool)
    op = choose_threshold(scores, is_defect, "escape", 0.0, review_margin=0.1)
    assert (op.review_low, op.review_high) == pytest.approx((op.threshold - 0.1, op.threshold + 0.1))
    escape, false_reject, review = rates_at(scores, is_defect, op.policy())
    assert escape.count == 0
    assert review.count == int(((scores >= op.review_low) & (scores < op.review_high)).sum())
    assert op.policy().decide(op.threshold).value == "review"


def test_no_defects_is_an_error():
    with pytest.raises(OperatingPointError, match="defect"):
        choose_threshold([0.1, 0.2], [False, False])


def test_clopper_pearson_known_values():
    low, high = interval(0, 10)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-6)
    low, high = interval(10, 10)
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 10), abs=1e-6)
    low, high = interval(3, 20)  # R binom.test(3, 20): 0.0320 - 0.3789
    assert (low, high) == pytest.approx((0.03207, 0.37893), abs=2e-4)


def test_wilson_matches_closed_form():
    k, n, z = 3, 20, 1.959964
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert interval(k, n, "wilson") == pytest.approx((centre - half, centre + half), abs=1e-5)


def test_small_samples_cannot_demonstrate_low_rates():
    assert samples_to_demonstrate(0.005) == 736
    scores, is_defect = _data(1, n_defect=60)
    op = choose_threshold(scores, is_defect, "escape", 0.005)
    assert op.escape.count == 0 and op.escape.high > 0.005
    assert "736" in op.note


def test_policy_round_trip():
    scores, is_defect = _data(3)
    op = choose_threshold(scores, is_defect, review_margin=0.05)
    assert isinstance(op.policy(), DecisionPolicy)
    assert op.to_dict()["target"] == "escape"
