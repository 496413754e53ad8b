"""The rules around training that need no TensorFlow: the stages a config plans, its auto settings, the
run's operating point and its decision counts. The trainer calls them; they are tested without a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np

from inspector.dataset import SplitManifest
from inspector.decision import DecisionPolicy, defect_score
from inspector.operating_point import Target, choose_policy, outcomes
from inspector.runfolder import OperatingPointRecord
from training.auto import IMAGES_SEEN, MAX_EPOCHS, MIN_EPOCHS, TIME_BUDGET_S, choose_epochs, choose_input_size, survey
from training.config import TrainConfig
from training.folds import OutOfFold


class RunError(ValueError):
    """The run folder or the configuration cannot be used as asked."""


@dataclass
class Stage:
    name: str  # head | finetune | full
    epochs: int
    learning_rate: float


def plan_stages(config: TrainConfig) -> List[Stage]:
    if config.warm_start.run:  # one short stage from the previous run's weights (training.warmstart)
        return [Stage("full", config.warm_start.epochs, config.warm_start.learning_rate)]
    if not config.model.pretrained:
        if config.optim.epochs == "auto":
            raise RunError("optim.epochs is still auto: resolve_auto sets it from the number of training images")
        return [Stage("full", config.optim.epochs, config.optim.learning_rate)]
    ft = config.finetune
    stages = [Stage("head", ft.head_epochs, ft.head_learning_rate), Stage("finetune", ft.epochs, ft.learning_rate)]
    stages = [s for s in stages if s.epochs > 0]
    if not stages:
        raise RunError("finetune.head_epochs and finetune.epochs are both 0: nothing to train")
    return stages


def resolve_auto(config: TrainConfig, manifest: SplitManifest, echo: Callable[[str], None]) -> TrainConfig:
    """The config with ``auto`` epochs, input size and grayscale replaced by what the training images call for."""
    if config.resolved:
        return config
    train_images = len(manifest.splits["train"])
    if config.optim.epochs == "auto":
        epochs = choose_epochs(train_images)
        config = config.model_copy(update={"optim": config.optim.model_copy(update={"epochs": epochs})})
        if not config.model.pretrained and not config.warm_start.run:
            echo(
                f"epochs auto: {epochs} (about {IMAGES_SEEN:,} training images seen, {train_images} per epoch, "
                f"within {MIN_EPOCHS}-{MAX_EPOCHS})"
            )
    found = survey(manifest, config.data.root or None, config.data.roi, seed=config.seed)
    model, data = config.model, config.data
    if model.input_size == "auto":
        epochs = sum(stage.epochs for stage in plan_stages(config))
        width, height = choose_input_size(found.sizes, train_images, epochs)
        model = model.model_copy(update={"input_size": (width, height)})
        shape = "the images' shape kept, " if width != height else ""
        echo(
            f"input size auto: {width}x{height} ({shape}median short side {int(np.median(found.short_sides or [0]))} "
            f"px of {len(found.sizes)} training images; at most what {epochs} epochs over {train_images} images "
            f"allow in about {TIME_BUDGET_S // 60:.0f} minutes on two CPU cores)"
        )
    if data.grayscale is None:
        data = data.model_copy(update={"grayscale": found.gray})
        echo(
            f"grayscale auto: {'yes' if found.gray else 'no'} (training images are "
            f"{'gray' if found.gray else 'in colour'})"
        )
    return config.model_copy(update={"model": model, "data": data})


def choose_run_policy(
    config: TrainConfig, val_probs: np.ndarray, val_labels: np.ndarray, good_index: int, oof: Optional[OutOfFold] = None
) -> OperatingPointRecord:
    """The run's operating point on the out-of-fold scores if there are any, else on the validation
    scores (or the fixed ``report.threshold``)."""
    op = config.operating_point
    if oof is not None:
        val_probs, val_labels = oof.probabilities, oof.labels
    is_defect = np.asarray(val_labels) != good_index
    chosen_on = (
        oof.describe(good_index)
        if oof is not None
        else f"validation split ({int(is_defect.sum())} defect, {int((~is_defect).sum())} good images)"
    )
    if config.report.threshold is not None:
        return OperatingPointRecord(
            policy=DecisionPolicy(threshold=config.report.threshold),
            target=op.target,
            target_rate=op.target_rate,
            chosen_on="fixed by report.threshold",
        )
    if not is_defect.any() or is_defect.all():
        return OperatingPointRecord(
            policy=DecisionPolicy(),
            target=op.target,
            target_rate=op.target_rate,
            chosen_on=chosen_on,
            note="validation lacks good or defect images: threshold 0.5",
        )
    line = config.line
    # the budget rule weighs false rejects always; the escape rule only to fall back to a review band
    weighs_false_rejects = op.target is Target.BUDGET or op.review_when_unsupported
    choice = choose_policy(
        defect_score(val_probs, good_index),
        is_defect,
        op.target,
        op.target_rate,
        op.review_margin,
        line.max_false_reject_rate if weighs_false_rejects else None,
        line.max_review_rate,
        line.max_escape_rate,
    )
    return OperatingPointRecord(
        policy=choice.policy,
        target=op.target,
        target_rate=op.target_rate,
        chosen_on=chosen_on,
        note=choice.note,
        chance=choice.chance,
    )


def decision_counts(probs: np.ndarray, labels: np.ndarray, good_index: int, policy: DecisionPolicy) -> dict:
    """Escapes, false rejects and review of ``policy`` (band-aware), JSON-ready."""
    scores, is_defect = defect_score(probs, good_index), np.asarray(labels) != good_index
    passed, failed = outcomes(scores, policy)
    return {
        "samples": int(len(scores)),
        "defects": int(is_defect.sum()),
        "goods": int((~is_defect).sum()),
        "escapes": int((passed & is_defect).sum()),
        "false_rejects": int((failed & ~is_defect).sum()),
        "review": int((~passed & ~failed).sum()),
    }


def share(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}% ({count}/{total})" if total else "-"
