"""What flip averaging and tiling buy on validation, what they cost, and which one the bundle runs.

Each inference variant (``InferenceSpec``: flip views, tiles) is run on the validation split through
``inspector.inference.Classifier``, the station's code, and measured: pass/fail ROC AUC, escapes and false
rejects at the operating point chosen on its own scores, escapes at the line's false-reject budget, and
milliseconds per part (wall time of the whole split over its size, with the load average beside it: the
machine may be shared). ``auto`` keeps the plain variant unless another one *helps*: fewer escapes at
the false-reject budget, or as many and an AUC higher by at least :data:`MIN_AUC_GAIN`; among those that
help, the fewest escapes, then the highest AUC, then the cheapest wins.

Example:
    >>> trials = measure(bundle, val, root, candidates(FlipChoice.AUTO, TilingChoice.OFF, 0.25), pick)  # doctest: +SKIP
    >>> chosen = choose(trials, InferenceSpec())                                                      # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from calibration.operating_point import OperatingPoint
from calibration.representative import LabeledImages
from inspector.bundle import Bundle, FlipAveraging, InferenceSpec, TilingSpec
from inspector.decision import defect_score
from inspector.metrics import roc_auc
from inspector.operating_point import OperatingPointError, Target, threshold_for

MIN_AUC_GAIN = 0.002  # smaller AUC differences on a few hundred validation images are noise


class FlipChoice(str, Enum):
    """``--tta``: a flip-averaging mode for the bundle, or ``auto`` (on only when it helps on validation)."""

    NONE = "none"
    HFLIP = "hflip"
    VFLIP = "vflip"
    HVFLIP = "hvflip"
    AUTO = "auto"


class TilingChoice(str, Enum):
    """``--tiles``: whole frame (off), tiles (on), or tiles only when they help on validation (auto)."""

    OFF = "off"
    ON = "on"
    AUTO = "auto"


def default_spec(tta: FlipChoice, tiles: TilingChoice, overlap: float) -> InferenceSpec:
    """What the bundle runs unless ``auto`` finds something better: the fixed choices, auto ones off."""
    return InferenceSpec(
        tta=FlipAveraging.NONE if tta == FlipChoice.AUTO else FlipAveraging(tta.value),
        tiling=TilingSpec(overlap=overlap) if tiles == TilingChoice.ON else None,
    )


def candidates(tta: FlipChoice, tiles: TilingChoice, overlap: float) -> List[InferenceSpec]:
    """The variants to measure: the plain one (for the comparison), the chosen one, all for ``auto``."""
    flips = [FlipAveraging.NONE]  # first: the plain variant every other one is compared with
    flips += [f for f in FlipAveraging if f != FlipAveraging.NONE and tta in (FlipChoice.AUTO, FlipChoice(f.value))]
    tilings: List[Optional[TilingSpec]] = [None]
    if tiles != TilingChoice.OFF:
        tilings.append(TilingSpec(overlap=overlap))
    specs = [InferenceSpec(tta=f, tiling=t) for t in tilings for f in flips]
    if tiles == TilingChoice.ON and tta != FlipChoice.AUTO:  # the plain variant and the chosen one only
        specs = [s for s in specs if s == InferenceSpec() or s == default_spec(tta, tiles, overlap)]
    return specs


@dataclass
class InferenceTrial:
    """One inference variant on the validation split."""

    inference: InferenceSpec
    probs: np.ndarray
    operating_point: OperatingPoint
    auc: Optional[float]
    escapes_at_budget: int  # defects passed at the threshold that fails the budget's share of good parts
    false_reject_budget: float
    ms_per_part: float
    load: float  # 1-minute load average when it was timed

    @property
    def name(self) -> str:
        return self.inference.describe()

    def to_dict(self) -> dict:
        op = self.operating_point
        return {
            "inference": self.inference.model_dump(mode="json"),
            "auc": None if self.auc is None else round(self.auc, 4),
            "threshold": round(op.threshold, 6),
            "escapes": op.escape.count,
            "defects": op.escape.total,
            "false_rejects": op.false_reject.count,
            "goods": op.false_reject.total,
            "escapes_at_false_reject_budget": self.escapes_at_budget,
            "false_reject_budget": self.false_reject_budget,
            "ms_per_part": round(self.ms_per_part, 2),
            "load_average": round(self.load, 2),
        }


def escapes_at_budget(scores: np.ndarray, is_defect: np.ndarray, budget: float) -> int:
    """Defects passed at the threshold that fails at most ``budget`` of the good parts."""
    try:
        threshold = threshold_for(scores, is_defect, Target.FALSE_REJECT, budget)
    except OperatingPointError:
        return int(is_defect.sum())
    return int((scores[is_defect] < threshold).sum())


def measure(
    bundle: Bundle,
    val: LabeledImages,
    root: Optional[Path],
    specs: Sequence[InferenceSpec],
    pick: Callable[[np.ndarray, InferenceSpec], OperatingPoint],
    false_reject_budget: float,
    threads: Optional[int] = None,
) -> List[InferenceTrial]:
    """Run each variant on ``val`` with the station's classifier; ``pick`` chooses its operating point."""
    from calibration.evaluate import predict_bundle

    good = bundle.manifest.good_index
    is_defect = val.labels != good
    trials = []
    for spec in specs:
        start = time.perf_counter()
        probs = predict_bundle(bundle, val, root, threads, inference=spec)
        elapsed = time.perf_counter() - start
        scores = np.asarray(defect_score(probs, good), np.float64)
        both = bool(is_defect.any() and (~is_defect).any())
        trials.append(
            InferenceTrial(
                spec,
                probs,
                pick(scores, spec),
                float(roc_auc(scores, is_defect)) if both else None,
                escapes_at_budget(scores, is_defect, false_reject_budget),
                false_reject_budget,
                1000.0 * elapsed / max(1, len(val.labels)),
                os.getloadavg()[0],
            )
        )
    return trials


def _helps(trial: InferenceTrial, base: InferenceTrial) -> bool:
    if trial.escapes_at_budget != base.escapes_at_budget:
        return trial.escapes_at_budget < base.escapes_at_budget
    return trial.auc is not None and base.auc is not None and trial.auc >= base.auc + MIN_AUC_GAIN


def choose(trials: Sequence[InferenceTrial], default: InferenceSpec, auto: bool) -> InferenceTrial:
    """The trial the bundle runs: ``default``, or with ``auto`` the best one that helps over it."""
    base = next(t for t in trials if t.inference == default)
    if not auto:
        return base
    better = [t for t in trials if _helps(t, base)]
    if not better:
        return base
    return min(better, key=lambda t: (t.escapes_at_budget, -(t.auc or 0.0), t.ms_per_part))


def format_trials(trials: Sequence[InferenceTrial], chosen: InferenceTrial) -> str:
    """A terminal table: what each variant buys on validation beside what it costs."""
    budget = trials[0].false_reject_budget if trials else 0.05
    width = max(len(t.name) for t in trials) + 2
    lines = [
        f"inference on validation (the station's classifier; load average {trials[0].load:.1f} while timed):",
        f"  {'variant':<{width}}{'AUC':>8}{'escapes':>10}{'false rej':>11}"
        f"{f'esc@{100 * budget:g}%FR':>12}{'ms/part':>9}",
    ]
    for t in trials:
        op = t.operating_point
        auc = "n/a" if t.auc is None else f"{t.auc:.4f}"
        mark = "  <- bundle" if t is chosen else ""
        lines.append(
            f"  {t.name:<{width}}{auc:>8}{f'{op.escape.count}/{op.escape.total}':>10}"
            f"{f'{op.false_reject.count}/{op.false_reject.total}':>11}"
            f"{f'{t.escapes_at_budget}/{op.escape.total}':>12}{t.ms_per_part:>9.1f}{mark}"
        )
    lines.append("  (escapes and false rejects at each variant's own operating point, chosen on these scores)")
    return "\n".join(lines)
