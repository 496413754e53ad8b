"""training.outcome: planned stages, the run's operating point (validation, out-of-fold, fixed) and counts."""

import numpy as np
import pytest

from training.config import TrainConfig
from training.folds import OutOfFold
from training.outcome import RunError, choose_run_policy, decision_counts, plan_stages


def _config(**sections):
    return TrainConfig.model_validate({"data": {"root": "d"}, **sections})


def test_stages_planned_from_the_weights():
    assert [(s.name, s.epochs) for s in plan_stages(_config(model={"weights": "none"}, optim={"epochs": 90}))] == [
        ("full", 90)
    ]
    with pytest.raises(RunError, match="still auto"):  # resolve_auto sets it from the training images first
        plan_stages(_config(model={"weights": "none"}))
    pretrained = plan_stages(_config(finetune={"head_epochs": 3, "epochs": 7}))
    assert [(s.name, s.epochs) for s in pretrained] == [("head", 3), ("finetune", 7)]
    with pytest.raises(RunError, match="nothing to train"):
        plan_stages(_config(finetune={"head_epochs": 0, "epochs": 0}))


PROBS = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8], [0.1, 0.9]])  # class 0 = good
LABELS = np.array([0, 0, 0, 1, 1])


def test_operating_point_on_validation_out_of_fold_or_fixed():
    config = _config(operating_point={"target": "escape"})
    on_val = choose_run_policy(config, PROBS, LABELS, 0)
    assert on_val.policy.threshold == pytest.approx(0.55) and on_val.chosen_on.startswith("validation split (2 defect")
    oof = OutOfFold(np.array([[0.6, 0.4], [0.5, 0.5], [0.3, 0.7]]), np.array([0, 1, 1]), ["a", "b", "c"], 3)
    on_oof = choose_run_policy(config, PROBS, LABELS, 0, oof)
    assert on_oof.policy.threshold == pytest.approx(0.45) and on_oof.chosen_on.startswith("3-fold out-of-fold")
    fixed = choose_run_policy(_config(report={"threshold": 0.3}), PROBS, LABELS, 0)
    assert fixed.policy.threshold == 0.3 and fixed.chosen_on == "fixed by report.threshold"
    only_good = choose_run_policy(config, PROBS[:3], LABELS[:3], 0)
    assert only_good.policy.threshold == 0.5 and "lacks good or defect" in only_good.note


def test_the_default_target_is_the_line_budget_and_says_what_five_images_support():
    chosen = choose_run_policy(_config(), PROBS, LABELS, 0)
    assert chosen.target.value == "budget"
    counts = decision_counts(PROBS, LABELS, 0, chosen.policy)
    assert counts["escapes"] == counts["false_rejects"] == 0  # the gap between 0.3 and 0.8 separates them
    assert "less than even" in chosen.note  # two defects and three good parts cannot show 2 % escapes
    assert chosen.chance is not None and chosen.chance < 0.5  # run.json keeps it for the verdicts' note
    assert choose_run_policy(_config(operating_point={"target": "escape"}), PROBS, LABELS, 0).chance is None


def test_decision_counts_are_band_aware():
    from inspector.decision import DecisionPolicy

    counts = decision_counts(PROBS, LABELS, 0, DecisionPolicy(threshold=0.5, review_low=0.25, review_high=0.85))
    assert counts == {"samples": 5, "defects": 2, "goods": 3, "escapes": 0, "false_rejects": 0, "review": 2}
