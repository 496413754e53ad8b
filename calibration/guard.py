"""Accuracy guard: does the converted model still decide like the float model it came from?

Post-training INT8 is known to hurt MobileNetV3 (hard-swish and squeeze-excite activations have wide,
skewed ranges that one scale per tensor represents badly). Both models are run on the held-out validation
split, the converted one in the edge's own interpreter code, and compared: accuracy of each, the drop in
percentage points, how often they agree on the top class, how far the defect scores move, and the
escape / false-reject rates both give at the operating threshold. A drop above the budget stops the
calibration with a message that lists what to try. A positive budget finer than one validation image
(1 pp of 90 images is 0.9 of an image) is widened to one image, up to twice the budget: otherwise any
single image that changes its class would refuse the model, which measures the split's size, not the
quantization. Smaller splits keep the budget as given (any changed image fails).

Example:
    >>> import numpy as np
    >>> from inspector.decision import DecisionPolicy
    >>> p = np.array([[0.9, 0.1], [0.2, 0.8]]); q = np.array([[0.8, 0.2], [0.6, 0.4]])
    >>> check = check_parity(p, q, np.array([0, 1]), good_index=0, policy=DecisionPolicy(), budget_pp=1.0)
    >>> check.passed, round(check.drop_pp, 1), check.agreement
    (False, 50.0, 0.5)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, Sequence

import numpy as np

from calibration.operating_point import IntervalMethod, Rate, rates_at
from inspector.decision import DecisionPolicy, defect_score


class GuardError(RuntimeError):
    """The converted model lost more accuracy than the budget allows; ``result`` holds what was measured."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class ParityCheck:
    """Float vs converted model on the same images."""

    kind: str  # e.g. "int8 (full integer)"
    samples: int
    float_accuracy: float
    quant_accuracy: float
    drop_pp: float  # float - converted accuracy, in percentage points
    agreement: float  # fraction of images with the same top-1 class
    mean_abs_score_diff: float  # mean |defect score float - converted|
    max_abs_score_diff: float
    threshold: float
    float_escape: Rate
    quant_escape: Rate
    float_false_reject: Rate
    quant_false_reject: Rate
    budget_pp: float

    @property
    def allowed_pp(self) -> float:
        """The budget, or one validation image's worth of accuracy when a positive budget is finer than that
        (and one image is at most twice the budget)."""
        one_image = 100.0 / self.samples
        return one_image if 0 < self.budget_pp < one_image <= 2 * self.budget_pp else self.budget_pp

    @property
    def passed(self) -> bool:
        return self.drop_pp <= self.allowed_pp + 1e-9  # a drop of exactly one image is not a rounding error away

    def to_dict(self) -> dict:
        out = asdict(self)
        out["allowed_pp"] = self.allowed_pp
        out["passed"] = self.passed
        return out

    def summary(self) -> str:
        return (
            f"{self.kind}: accuracy {100 * self.quant_accuracy:.2f}% vs float {100 * self.float_accuracy:.2f}% "
            f"(drop {self.drop_pp:+.2f} pp, budget {self._budget_text()}), top-1 agreement "
            f"{100 * self.agreement:.1f}% on {self.samples} images; at threshold {self.threshold:.4f} escape "
            f"{100 * self.quant_escape.rate:.2f}% (float {100 * self.float_escape.rate:.2f}%), false reject "
            f"{100 * self.quant_false_reject.rate:.2f}% (float {100 * self.float_false_reject.rate:.2f}%)"
        )

    def _budget_text(self) -> str:
        if self.allowed_pp == self.budget_pp:
            return f"{self.budget_pp:.2f} pp"
        return f"{self.budget_pp:.2f} pp, widened to one of {self.samples} images: {self.allowed_pp:.2f} pp"


def check_parity(
    float_probs: np.ndarray,
    quant_probs: np.ndarray,
    labels: np.ndarray,
    good_index: int,
    policy: DecisionPolicy,
    budget_pp: float,
    kind: str = "converted",
    method: IntervalMethod | str = IntervalMethod.CLOPPER_PEARSON,
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
        drop_pp=100.0 * (float_acc - quant_acc),
        agreement=float((float_top == quant_top).mean()),
        mean_abs_score_diff=float(diff.mean()),
        max_abs_score_diff=float(diff.max()),
        threshold=policy.threshold,
        float_escape=f_esc,
        quant_escape=q_esc,
        float_false_reject=f_fr,
        quant_false_reject=q_fr,
        budget_pp=float(budget_pp),
    )


def failure_message(
    checks: Sequence[ParityCheck], representative_size: int, remedy_tried: bool, fallback_layers: int
) -> str:
    """What went wrong (every variant measured) and what to try next, most effective first."""
    lines = [
        f"accuracy guard failed: the converted model loses more than {checks[0].allowed_pp:.2f} "
        f"percentage points of validation accuracy"
    ]
    lines += [f"  {c.summary()}" for c in checks]
    tries: List[str] = []
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
    tries.append("--precision float16: no INT8 loss, half the float32 size, but no integer accelerator")
    tries.append(
        "retrain for longer or with more data: a model with confident, well-separated scores "
        "survives quantization better (quantization-aware training is not available for Keras 3 here)"
    )
    tries.append("--accuracy-budget: raise it only if this drop is acceptable for the line")
    lines.append("what to try:")
    lines += [f"  - {t}" for t in tries]
    return "\n".join(lines)
