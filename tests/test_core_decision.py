"""Pass/fail/review from the defect score."""

import numpy as np
import pytest

from inspector.decision import DecisionPolicy, defect_score
from inspector.protocol.enums import Verdict


def test_threshold_and_review_band():
    policy = DecisionPolicy(threshold=0.5, review_low=0.4, review_high=0.6)
    assert policy.decide(0.39) == Verdict.PASS
    assert policy.decide(0.4) == Verdict.REVIEW
    assert policy.decide(0.59) == Verdict.REVIEW
    assert policy.decide(0.6) == Verdict.FAIL
    assert DecisionPolicy(threshold=0.5).decide(0.5) == Verdict.FAIL


def test_invalid_bands_are_rejected():
    with pytest.raises(ValueError):
        DecisionPolicy(threshold=0.5, review_low=0.6, review_high=0.7)
    with pytest.raises(ValueError):
        DecisionPolicy(threshold=0.5, review_low=0.4)


def test_defect_score_is_one_minus_good():
    probs = np.array([[0.1, 0.7, 0.2], [0.0, 1.0, 0.0]])
    assert np.allclose(defect_score(probs, 1), [0.3, 0.0])
