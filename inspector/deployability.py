"""Is this model fit for a line? One verdict, DEPLOYABLE or NOT DEPLOYABLE, with the reasons.

``inspector train``, ``calibrate``, ``evaluate`` and the demo end with the same verdict from the same code,
so a model that looks fine by one number (accuracy on a split full of good parts, a ROC AUC from another
run) but decides badly at the line's threshold is called what it is. A model is NOT DEPLOYABLE when:

* its pass/fail ROC AUC is near chance (below ``LineBudget.min_auc``);
* it predicts a constant: every image the same class, or defect scores spread less than 0.01;
* its best validation epoch was the first of several (training never improved it);
* at the chosen operating point, escapes, false rejects or parts sent to review exceed the line's budget;
* it was judged on images it was trained on (the numbers say nothing about new parts);
* it was judged on fewer than ``LineBudget.min_judged`` defect or good images (2 defects and 2 good parts
  that all pass tell nothing about a line, and a report must not call that DEPLOYABLE);
* no image could be judged at all (every one skipped; the reasons are counted).

A split without defect (or without good) images cannot show escapes (or false rejects); that is a note,
not a reason (a folder of good parts from the line is a fair check of false rejects), as are a split
small for a budget but not below ``min_judged`` (one image is more than the budget) and a defect class
with no image in it. TensorFlow-free: it works on scores and labels only.

Example:
    >>> import numpy as np
    >>> v = assess(np.full(10, 0.3), np.arange(10) < 5, DecisionPolicy(threshold=0.5))
    >>> v.status.value, [r.problem.value for r in v.reasons]
    ('NOT DEPLOYABLE', ['constant_prediction', 'chance_auc', 'escapes_over_budget'])
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import numpy.typing as npt
from pydantic import Field

from inspector.config import StrictModel
from inspector.decision import DecisionPolicy
from inspector.metrics import roc_auc
from inspector.operating_point import outcomes

# Defect scores spread less than this over a whole split: the model answers the same for every part.
CONSTANT_SPREAD = 0.01


class Deployability(str, Enum):
    DEPLOYABLE = "DEPLOYABLE"
    NOT_DEPLOYABLE = "NOT DEPLOYABLE"


class Problem(str, Enum):
    CHANCE_AUC = "chance_auc"
    CONSTANT_PREDICTION = "constant_prediction"
    NEVER_IMPROVED = "never_improved"
    ESCAPES_OVER_BUDGET = "escapes_over_budget"
    FALSE_REJECTS_OVER_BUDGET = "false_rejects_over_budget"
    REVIEW_OVER_BUDGET = "review_over_budget"
    TRAINING_IMAGES = "evaluated_on_training_images"
    TOO_FEW_IMAGES = "too_few_images"
    NO_USABLE_IMAGES = "no_usable_images"


class LineBudget(StrictModel):
    """What a line accepts from a model at its operating point (rates are fractions)."""

    max_escape_rate: float = Field(0.02, ge=0, le=1, description="Largest share of defects passed")
    max_false_reject_rate: float = Field(0.05, ge=0, le=1, description="Largest share of good parts failed")
    max_review_rate: float = Field(0.10, ge=0, le=1, description="Largest share of parts sent to review")
    min_auc: float = Field(0.75, ge=0.5, le=1, description="Pass/fail ROC AUC below this is near chance")
    min_judged: int = Field(
        5, ge=1, description="Fewer defect (or good) images than this among the judged ones cannot judge a model"
    )


@dataclass(frozen=True)
class Reason:
    problem: Problem
    message: str


@dataclass
class DeployabilityVerdict:
    """The verdict, why, and what it was judged on (``basis``, e.g. "test split, INT8 bundle")."""

    reasons: List[Reason] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    basis: str = ""

    @property
    def status(self) -> Deployability:
        return Deployability.NOT_DEPLOYABLE if self.reasons else Deployability.DEPLOYABLE

    @property
    def deployable(self) -> bool:
        return not self.reasons

    def to_dict(self) -> Dict[str, Any]:
        return {
            "status": self.status.value,
            "basis": self.basis,
            "reasons": [{"problem": r.problem.value, "message": r.message} for r in self.reasons],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> DeployabilityVerdict:
        return cls(
            [Reason(Problem(r["problem"]), r["message"]) for r in data.get("reasons", [])],
            list(data.get("notes", [])),
            data.get("basis", ""),
        )

    def summary(self) -> str:
        """Terminal text: the verdict line, then one line per reason and note."""
        head = f"{self.status.value}" + (f" ({self.basis})" if self.basis else "")
        lines = [head] + [f"  - {r.message}" for r in self.reasons] + [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_html(self) -> str:
        """The block at the top of every HTML report, from the report toolkit's one verdict template."""
        from inspector.reporting import verdict_banner

        return str(verdict_banner(self))


def _pct(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}% ({count}/{total})"


def assess(
    scores: npt.ArrayLike,
    is_defect: npt.ArrayLike,
    policy: DecisionPolicy,
    budget: Optional[LineBudget] = None,
    predicted: Optional[npt.ArrayLike] = None,
    best_epoch: Optional[int] = None,
    epochs: Optional[int] = None,
    training_images: int = 0,
    basis: str = "",
    absent: Sequence[str] = (),
    chance: Optional[float] = None,
) -> DeployabilityVerdict:
    """The verdict on defect scores ``1 - p(good)`` at ``policy`` (a review band is neither pass nor fail).

    ``predicted`` (top-1 class per image) detects a model that answers one class; ``best_epoch`` of
    ``epochs`` (the kept weights' global epoch) detects training that never improved the model;
    ``training_images`` is how many judged images were in the training split; ``absent`` names the
    defect classes with no judged image (:func:`absent_defect_classes`), a note; ``chance`` is the
    operating point's estimated chance of meeting the budget (the budget target), a note when below even.
    """
    budget = budget or LineBudget()
    scores = np.asarray(scores, np.float64).ravel()
    is_defect = np.asarray(is_defect, bool).ravel()
    verdict = DeployabilityVerdict(basis=basis)
    reasons = verdict.reasons
    if scores.size == 0:
        reasons.append(Reason(Problem.NO_USABLE_IMAGES, "no image to judge the model on"))
        return verdict
    defects, goods = int(is_defect.sum()), int((~is_defect).sum())
    if defects and goods:  # on good parts only, one answer for all is right
        one_class = predicted is not None and len(set(np.asarray(predicted).tolist())) == 1
        if one_class or float(np.ptp(scores)) < CONSTANT_SPREAD:
            what = "every image gets the same class" if one_class else f"defect scores span only {np.ptp(scores):.4f}"
            reasons.append(
                Reason(Problem.CONSTANT_PREDICTION, f"constant prediction: {what}; the model does not tell parts apart")
            )
        auc = roc_auc(scores, is_defect)
        if auc < budget.min_auc:
            reasons.append(
                Reason(Problem.CHANCE_AUC, f"pass/fail ROC AUC {auc:.3f} is near chance (needs >= {budget.min_auc:g})")
            )
    passed, failed = outcomes(scores, policy)
    if defects:
        escapes = int((is_defect & passed).sum())
        if escapes / defects > budget.max_escape_rate:
            reasons.append(
                Reason(
                    Problem.ESCAPES_OVER_BUDGET,
                    f"escapes {_pct(escapes, defects)} at threshold {policy.threshold:.4f} exceed "
                    f"the line's budget of {100 * budget.max_escape_rate:g}%",
                )
            )
    else:
        verdict.notes.append("no defect image: escapes cannot be measured")
    if goods:
        rejects = int((~is_defect & failed).sum())
        if rejects / goods > budget.max_false_reject_rate:
            reasons.append(
                Reason(
                    Problem.FALSE_REJECTS_OVER_BUDGET,
                    f"false rejects {_pct(rejects, goods)} at threshold {policy.threshold:.4f} "
                    f"exceed the line's budget of {100 * budget.max_false_reject_rate:g}%",
                )
            )
    else:
        verdict.notes.append("no good image: false rejects cannot be measured")
    for count, what in ((defects, "defect"), (goods, "good")):
        if 0 < count < budget.min_judged:
            reasons.append(
                Reason(
                    Problem.TOO_FEW_IMAGES,
                    f"only {count} {what} image{'s' if count > 1 else ''} judged, too few to judge a model (needs "
                    f"at least {budget.min_judged}): collect more, or judge it on line images (inspector evaluate)",
                )
            )
    verdict.notes += _coarse_notes(defects, goods, budget)
    reviewed = int((~passed & ~failed).sum())
    if reviewed / scores.size > budget.max_review_rate:
        reasons.append(
            Reason(
                Problem.REVIEW_OVER_BUDGET,
                f"the review band [{policy.review_low:.4f}, {policy.review_high:.4f}) sends "
                f"{_pct(reviewed, scores.size)} of parts to a person, more than the line's budget of "
                f"{100 * budget.max_review_rate:g}%",
            )
        )
    if best_epoch is not None and epochs is not None and epochs >= 3 and best_epoch <= 1:
        reasons.append(
            Reason(
                Problem.NEVER_IMPROVED,
                f"the best validation epoch was epoch {best_epoch} of {epochs}: training never "
                f"improved the model (check labels, learning rate, input size)",
            )
        )
    if absent and defects:  # with no defect at all, the note above already says so
        verdict.notes.append(
            f"no image of defect class {', '.join(absent)} among the judged ones: this verdict says nothing "
            f"about how many of those parts escape"
        )
    if training_images:
        reasons.append(
            Reason(
                Problem.TRAINING_IMAGES,
                f"{_pct(training_images, scores.size)} of the judged images were used to train the "
                f"model; judge it on images it has not seen",
            )
        )
    if chance is not None and chance < 0.5:
        what = (
            f"this DEPLOYABLE on {scores.size} images may not hold on the line"
            if verdict.deployable
            else "the scores it was chosen on already said so"
        )
        verdict.notes.append(
            f"the operating point's chance of meeting the line's budget on new parts, estimated from the "
            f"scores it was chosen on, is {100 * chance:.0f}%: {what}; more validation images (or --folds) "
            f"make the point surer"
        )
    return verdict


def _coarse_notes(defects: int, goods: int, budget: LineBudget) -> List[str]:
    """Notes for a split too small to measure a budget: one image is more than the whole budget, so the
    verdict rests on that image (a person should not read DEPLOYABLE from 12 defects as 0.5 % escapes)."""
    notes = []
    for count, rate, what, kind in (
        (defects, budget.max_escape_rate, "defect", "escape"),
        (goods, budget.max_false_reject_rate, "good", "false-reject"),
    ):
        if count >= budget.min_judged and 1 / count > rate:
            notes.append(
                f"only {count} {what} images judged: one is {100 / count:.1f}%, more than the line's {kind} budget "
                f"of {100 * rate:g}%, so this verdict rests on single images; judge on more before trusting it"
            )
    return notes


def absent_defect_classes(labels: npt.ArrayLike, classes: Sequence[str], good_index: int) -> List[str]:
    """The defect classes (names) of which ``labels`` (class indices) hold no image."""
    present = set(np.asarray(labels).ravel().tolist())
    return [c for i, c in enumerate(classes) if i != good_index and i not in present]


def no_usable_images(skipped_reasons: Sequence[str], basis: str = "") -> DeployabilityVerdict:
    """NOT DEPLOYABLE because nothing could be judged; the skip reasons are counted, most common first."""
    counts = Counter(skipped_reasons)
    why = "; ".join(f"{n} x {reason}" for reason, n in counts.most_common(5)) or "no image found"
    return DeployabilityVerdict(
        [Reason(Problem.NO_USABLE_IMAGES, f"no usable image: all {len(skipped_reasons)} skipped ({why})")], basis=basis
    )
