"""Accuracy guard: does the converted model still decide like the float model it came from?

Post-training INT8 is known to hurt MobileNetV3 (hard-swish and squeeze-excite activations have wide,
skewed ranges that one scale per tensor represents badly). Both models are run on the held-out validation
split, the converted one in the edge's own interpreter code, and compared: how many parts each decides
wrong at the operating threshold (an escape or a false reject; a part sent to review is not wrong), the
top-1 class accuracy of each, how often they agree on the class, how far the defect scores move, and the
escape / false-reject rates at the threshold.

What is guarded is chosen by ``GuardMeasure``. By default (``either``) the model is refused only when it
decides worse on both measures: pass/fail accuracy at the threshold, which is what lets a bad part through
or stops a good one, and top-1 class accuracy. Each alone misjudges on its own: a converted model that
names a scratch a crack but fails it all the same decides like float on the line (synthetic cast set:
-3.3 pp of class accuracy, the same escapes), while quantization noise of a hundredth in the score flips
parts that lie at the threshold both ways (magnetic tile, 202 validation images: -1.98 pp of pass/fail
accuracy at 0.156 with no top-1 change, and the same test escapes as float). A converted model that
decides worse across the board loses on both and is refused. When the model passes on one measure while the other moved more than the budget, a warning
says which (the defect-kind counts on the dashboards, or the parts near the threshold). ``decision`` or
``classes`` guard that measure alone. A drop above the budget stops the calibration with a message that
lists what to try. A positive budget finer than one validation image (1 pp of 90 images is 0.9 of an
image) is widened to one image, up to twice the budget: otherwise any single image that changes would
refuse the model, which measures the split's size, not the quantization. Smaller splits keep the budget as
given (any changed image fails).

Example:
    >>> import numpy as np
    >>> from inspector.decision import DecisionPolicy
    >>> p = np.array([[0.9, 0.1], [0.2, 0.8]]); q = np.array([[0.8, 0.2], [0.6, 0.4]])
    >>> check = check_parity(p, q, np.array([0, 1]), good_index=0, policy=DecisionPolicy(), budget_pp=1.0)
    >>> check.passed, round(check.drop_pp, 1), round(check.class_drop_pp, 1), check.agreement
    (False, 50.0, 50.0, 0.5)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import List, Optional, Sequence

import numpy as np

from calibration.operating_point import IntervalMethod, Rate, rates_at
from inspector.decision import DecisionPolicy, defect_score


class GuardError(RuntimeError):
    """The converted model lost more accuracy than the budget allows; ``result`` holds what was measured."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


class GuardMeasure(str, Enum):
    """What the budget is a drop of."""

    EITHER = "either"  # refused only when both drops exceed the budget
    DECISION = "decision"  # pass/fail accuracy at the operating threshold: what the line does with a part
    CLASSES = "classes"  # top-1 accuracy over every class, defect kinds included


@dataclass(frozen=True)
class ParityCheck:
    """Float vs converted model on the same images."""

    kind: str  # e.g. "int8 (full integer)"
    samples: int
    float_accuracy: float  # top-1 over every class
    quant_accuracy: float
    agreement: float  # fraction of images with the same top-1 class
    mean_abs_score_diff: float  # mean |defect score float - converted|
    max_abs_score_diff: float
    threshold: float
    float_escape: Rate
    quant_escape: Rate
    float_false_reject: Rate
    quant_false_reject: Rate
    budget_pp: float
    measure: GuardMeasure = GuardMeasure.EITHER

    @property
    def float_decision_accuracy(self) -> float:
        """Share of images the float model does not decide wrong at the threshold: neither an escape nor a
        false reject. A part sent to review is not wrong (a person decides it, and the verdict bounds the
        review rate): counted wrong, a float model that sends every part to review would score below a
        converted one that passes them all."""
        return 1.0 - (self.float_escape.count + self.float_false_reject.count) / self.samples

    @property
    def quant_decision_accuracy(self) -> float:
        """The same for the converted model."""
        return 1.0 - (self.quant_escape.count + self.quant_false_reject.count) / self.samples

    @property
    def decision_drop_pp(self) -> float:
        """Float minus converted pass/fail accuracy at the threshold, in percentage points."""
        return 100.0 * (self.float_decision_accuracy - self.quant_decision_accuracy)

    @property
    def class_drop_pp(self) -> float:
        """Float minus converted top-1 accuracy, in percentage points."""
        return 100.0 * (self.float_accuracy - self.quant_accuracy)

    @property
    def drop_pp(self) -> float:
        """The drop the budget applies to (``either``: the smaller one)."""
        if self.measure == GuardMeasure.DECISION:
            return self.decision_drop_pp
        if self.measure == GuardMeasure.CLASSES:
            return self.class_drop_pp
        return min(self.decision_drop_pp, self.class_drop_pp)

    def drift_warning(self) -> Optional[str]:
        """Passed, but a measure the budget did not hold moved more than it: what that means on the line."""
        over = self.allowed_pp + 1e-9
        if not self.passed:
            return None
        if self.measure != GuardMeasure.DECISION and self.decision_drop_pp > over:
            return (
                f"{self.kind} names the defect kinds as float does but decides {self.decision_drop_pp:.2f} pp more "
                f"parts wrong at threshold {self.threshold:.4f} (escapes {self.quant_escape.count} vs float "
                f"{self.float_escape.count}, false rejects {self.quant_false_reject.count} vs "
                f"{self.float_false_reject.count} on validation): parts near the threshold; check the test split "
                "and the review band"
            )
        if self.measure != GuardMeasure.CLASSES and self.class_drop_pp > over:
            return (
                f"{self.kind} decides pass/fail as float does but names the defect kind right less often: class "
                f"accuracy {self.class_drop_pp:+.2f} pp below float. Counts per defect kind on the dashboards "
                "will differ from the float model's; --guard-on classes refuses such a model"
            )
        return None

    @property
    def allowed_pp(self) -> float:
        """The budget, or one validation image's worth of accuracy when a positive budget is finer than that
        (and one image is at most twice the budget)."""
        return _widened(self.budget_pp, self.samples)

    @property
    def escape_rise_pp(self) -> float:
        """Converted minus float escape rate at the threshold, in percentage points of the defects: the
        error a line pays for most, which accuracy over all images dilutes by the good parts."""
        return 100.0 * (self.quant_escape.rate - self.float_escape.rate)

    @property
    def allowed_escape_pp(self) -> float:
        """The budget for :attr:`escape_rise_pp`, widened to one defect as :attr:`allowed_pp` is to one image."""
        return _widened(self.budget_pp, self.float_escape.total)

    @property
    def passed(self) -> bool:
        return self.drop_pp <= self.allowed_pp + 1e-9  # a drop of exactly one image is not a rounding error away

    def to_dict(self) -> dict:
        out = asdict(self)
        out["measure"] = self.measure.value
        for name in (
            "float_decision_accuracy",
            "quant_decision_accuracy",
            "decision_drop_pp",
            "class_drop_pp",
            "drop_pp",
            "allowed_pp",
            "escape_rise_pp",
            "allowed_escape_pp",
            "passed",
        ):
            out[name] = getattr(self, name)
        out["warning"] = self.drift_warning()
        return out

    def summary(self) -> str:
        decision = (
            f"pass/fail accuracy {100 * self.quant_decision_accuracy:.2f}% vs float "
            f"{100 * self.float_decision_accuracy:.2f}% (drop {self.decision_drop_pp:+.2f} pp)"
        )
        classes = (
            f"class accuracy {100 * self.quant_accuracy:.2f}% vs float {100 * self.float_accuracy:.2f}% "
            f"(drop {self.class_drop_pp:+.2f} pp)"
        )
        first, second = (classes, decision) if self.measure == GuardMeasure.CLASSES else (decision, classes)
        guarded = {GuardMeasure.EITHER: "either", GuardMeasure.DECISION: "pass/fail", GuardMeasure.CLASSES: "classes"}
        return (
            f"{self.kind}: {first}; {second}; budget {self._budget_text()} ({guarded[self.measure]}), top-1 agreement "
            f"{100 * self.agreement:.1f}% on {self.samples} images; at threshold {self.threshold:.4f} escape "
            f"{100 * self.quant_escape.rate:.2f}% (float {100 * self.float_escape.rate:.2f}%), false reject "
            f"{100 * self.quant_false_reject.rate:.2f}% (float {100 * self.float_false_reject.rate:.2f}%)"
        )

    def _budget_text(self) -> str:
        if self.allowed_pp == self.budget_pp:
            return f"{self.budget_pp:.2f} pp"
        return f"{self.budget_pp:.2f} pp, widened to one of {self.samples} images: {self.allowed_pp:.2f} pp"


def _widened(budget_pp: float, count: int) -> float:
    """``budget_pp``, or one item's worth of ``count`` when a positive budget is finer and one item is at most
    twice the budget: a budget that one image exceeds says more about the split's size than the model."""
    if count <= 0:
        return budget_pp
    one = 100.0 / count
    return one if 0 < budget_pp < one <= 2 * budget_pp else budget_pp


def check_parity(
    float_probs: np.ndarray,
    quant_probs: np.ndarray,
    labels: np.ndarray,
    good_index: int,
    policy: DecisionPolicy,
    budget_pp: float,
    kind: str = "converted",
    method: IntervalMethod | str = IntervalMethod.CLOPPER_PEARSON,
    measure: GuardMeasure | str = GuardMeasure.EITHER,
) -> ParityCheck:
    float_probs = np.asarray(float_probs, np.float64)
    quant_probs = np.asarray(quant_probs, np.float64)
    labels = np.asarray(labels, np.int64)
    if float_probs.shape != quant_probs.shape or len(labels) != len(float_probs):
        raise ValueError(
            f"shapes differ: float {float_probs.shape}, converted {quant_probs.shape}, {len(labels)} labels"
        )
    if len(labels) == 0:
        raise ValueError("no validation image to compare the models on")
    float_top, quant_top = float_probs.argmax(1), quant_probs.argmax(1)
    float_acc = float((float_top == labels).mean())
    quant_acc = float((quant_top == labels).mean())
    fs, qs = defect_score(float_probs, good_index), defect_score(quant_probs, good_index)
    is_defect = labels != good_index
    f_esc, f_fr, _ = rates_at(fs, is_defect, policy, method)
    q_esc, q_fr, _ = rates_at(qs, is_defect, policy, method)
    diff = np.abs(fs - qs)
    return ParityCheck(
        kind=kind,
        samples=int(len(labels)),
        float_accuracy=float_acc,
        quant_accuracy=quant_acc,
        agreement=float((float_top == quant_top).mean()),
        mean_abs_score_diff=float(diff.mean()),
        max_abs_score_diff=float(diff.max()),
        threshold=policy.threshold,
        float_escape=f_esc,
        quant_escape=q_esc,
        float_false_reject=f_fr,
        quant_false_reject=q_fr,
        budget_pp=float(budget_pp),
        measure=GuardMeasure(measure),
    )


def failure_message(
    checks: Sequence[ParityCheck], representative_size: int, remedy_tried: bool, fallback_layers: int
) -> str:
    """What went wrong (every variant measured) and what to try next, most effective first."""
    what = {
        GuardMeasure.EITHER: "both pass/fail accuracy at the threshold and class accuracy",
        GuardMeasure.DECISION: "pass/fail accuracy at the threshold",
        GuardMeasure.CLASSES: "class accuracy",
    }[checks[0].measure]
    lines = [
        f"accuracy guard failed: the converted model loses more than {checks[0].allowed_pp:.2f} "
        f"percentage points of validation {what}"
    ]
    lines += [f"  {c.summary()}" for c in checks]
    # Ordered by what docs/training.md measured on magnetic tile: float16 keeps the float model's decisions;
    # how much INT8 costs varies between training runs of one recipe; float fallback and the representative
    # draw moved the loss less (fallback of 20 layers: -5.9 -> -4.0 pp; draws: noise of a few images).
    tries: List[str] = ["--precision float16: no INT8 loss, half the float32 size, but no integer accelerator"]
    tries.append(
        "train again with another --set seed=N: how much a model loses in INT8 varies between training runs "
        "of the same recipe (quantization-aware training is not available for Keras 3 here)"
    )
    if not remedy_tried:
        tries.append(
            "--remedy float-fallback: keep the layers with the largest INT8 error in float "
            f"(--fallback-layers {fallback_layers}; a mixed model, CPU only, no integer accelerator)"
        )
    else:
        tries.append(
            f"--fallback-layers {max(2 * fallback_layers, fallback_layers + 5)} or "
            "--fallback-ops HARD_SWISH,MEAN: keep more of the network in float"
        )
    tries.append(
        f"--representative-size {max(2 * representative_size, 500)} or another "
        "--representative-seed: activation ranges from more training images"
    )
    tries.append("--accuracy-budget: raise it only if this drop is acceptable for the line")
    lines.append("what to try:")
    lines += [f"  - {t}" for t in tries]
    return "\n".join(lines)
