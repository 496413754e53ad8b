"""Pass / fail / review from class scores, by the policy stored in the bundle.

The defect score is ``1 - p(good)``: the probability mass the model puts on any defect class. A part
passes when the score is below ``threshold`` and fails otherwise. With a review band
(``review_low <= score < review_high`` around the threshold) doubtful parts go to a person instead,
which is how lines keep escapes low without rejecting every borderline good part.

Example:
    >>> policy = DecisionPolicy(threshold=0.5, review_low=0.3, review_high=0.7)
    >>> [policy.decide(s).value for s in (0.1, 0.4, 0.9)]
    ['pass', 'review', 'fail']
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from pydantic import Field, model_validator

from inspector.config import StrictModel
from inspector.protocol.enums import Verdict


class DecisionPolicy(StrictModel):
    """Thresholds on the defect score ``1 - p(good)``."""

    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Defect score at or above which a part fails")
    review_low: Optional[float] = Field(
        None, ge=0.0, le=1.0, description="Scores from here up to review_high go to review"
    )
    review_high: Optional[float] = Field(None, ge=0.0, le=1.0, description="Upper end (exclusive) of the review band")

    @model_validator(mode="after")
    def _ordered(self) -> DecisionPolicy:
        if (self.review_low is None) != (self.review_high is None):
            raise ValueError("review_low and review_high must be given together")
        if (
            self.review_low is not None
            and self.review_high is not None
            and not (self.review_low <= self.threshold <= self.review_high)
        ):
            raise ValueError("the review band must satisfy review_low <= threshold <= review_high")
        return self

    def decide(self, defect_score: float) -> Verdict:
        if (
            self.review_low is not None
            and self.review_high is not None
            and (self.review_low <= defect_score < self.review_high)
        ):
            return Verdict.REVIEW
        return Verdict.FAIL if defect_score >= self.threshold else Verdict.PASS


def defect_score(probabilities: Sequence[float] | np.ndarray, good_index: int) -> np.ndarray | float:
    """``1 - p(good)`` for one probability vector or a batch (last axis = classes), clipped to [0, 1]."""
    probs = np.asarray(probabilities, dtype=np.float64)
    return np.clip(1.0 - probs[..., good_index], 0.0, 1.0)
