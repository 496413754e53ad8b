"""training.selection: the kept epoch and the stop follow the validation pass/fail score, not the loss."""

import pytest

from training.config import Monitor
from training.selection import EpochScore, ModelSelector, replay

# The issue-11 run: label smoothing keeps val_loss flat (its minimum at epoch 1) while val AUC rises.
FLAT_LOSS_RISING_AUC = [
    EpochScore(auc, esc, loss)
    for auc, esc, loss in [
        (0.62, 0.80, 0.690),
        (0.71, 0.60, 0.700),
        (0.80, 0.45, 0.702),
        (0.86, 0.30, 0.699),
        (0.90, 0.22, 0.701),
        (0.93, 0.15, 0.700),
        (0.95, 0.10, 0.703),
        (0.972, 0.05, 0.700),
        (0.968, 0.06, 0.701),
        (0.97, 0.06, 0.702),
        (0.965, 0.08, 0.700),
        (0.96, 0.07, 0.704),
        (0.969, 0.06, 0.703),
        (0.95, 0.09, 0.705),
    ]
]


def test_val_auc_keeps_the_epoch_where_the_pass_fail_score_peaked():
    selector = replay(FLAT_LOSS_RISING_AUC, Monitor.VAL_AUC, patience=4)
    assert selector.best_epoch == 8 and selector.best.auc == 0.972
    assert selector.should_stop  # four epochs without a better AUC after epoch 8
    by_loss = replay(FLAT_LOSS_RISING_AUC, Monitor.VAL_LOSS, patience=4)
    assert by_loss.best_epoch == 1  # what loss-based early stopping kept: the untrained model


def test_equal_auc_is_decided_by_escapes_then_loss():
    scores = [
        EpochScore(1.0, 0.10, 0.40),
        EpochScore(1.0, 0.00, 0.45),
        EpochScore(1.0, 0.00, 0.30),
        EpochScore(1.0, 0.00, 0.35),
    ]
    selector = replay(scores, Monitor.VAL_AUC, patience=5)
    assert selector.best_epoch == 3


def test_min_delta_and_state_round_trip():
    selector = ModelSelector(Monitor.VAL_AUC, patience=3, min_delta=0.01)
    assert selector.update(1, EpochScore(0.90, 0.2, 0.5))
    assert not selector.update(2, EpochScore(0.905, 0.3, 0.4))  # within min_delta, more escapes
    assert selector.update(3, EpochScore(0.905, 0.1, 0.4))  # within min_delta, fewer escapes
    again = ModelSelector.from_dict(selector.to_dict(), Monitor.VAL_AUC, 3, 0.01)
    assert (again.best, again.best_epoch, again.wait) == (selector.best, 3, 0)


def test_score_measured_from_probabilities():
    import numpy as np

    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.75, 0.25]])
    labels = np.array([0, 0, 0, 1, 1])
    score = EpochScore.measure(probs, labels, good_index=0, false_reject_budget=0.0)
    assert score.auc == pytest.approx(5 / 6)
    # Threshold just above the highest good score (0.3): the defect at 0.25 escapes, the one at 0.6 fails.
    assert score.escapes == 0.5
    assert score.loss == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.7, 0.6, 0.25])))
    assert EpochScore.measure(probs[:3], labels[:3], 0, 0.05).auc is None


def test_without_patience_the_stage_never_stops():
    selector = replay(FLAT_LOSS_RISING_AUC, Monitor.VAL_AUC, patience=None)
    assert selector.best_epoch == 8 and not selector.should_stop and selector.wait == len(FLAT_LOSS_RISING_AUC) - 8


def test_kept_epoch_is_the_last_unless_the_best_is_restored():
    from training.config import EarlyStoppingConfig
    from training.state import TrainState

    es = EarlyStoppingConfig()
    # The second stage of a run whose first stage ran 3 epochs: its epochs count on in global epochs.
    first = TrainState.fresh(es, history=[{"stage_index": 0, "epoch": i, "global_epoch": i} for i in range(1, 4)])
    second = first.next_stage(es)
    second.history += [{"stage_index": 1, "epoch": i, "global_epoch": 3 + i} for i in range(1, 15)]
    for epoch, score in enumerate(FLAT_LOSS_RISING_AUC, start=1):
        second.selector.update(epoch, score)
    assert second.best_global_epoch() == 3 + 8
    assert second.kept_global_epoch(restore_best=False) == 3 + 14
    assert second.kept_global_epoch(restore_best=True) == 3 + 8
    assert TrainState.fresh(es).kept_global_epoch(restore_best=False) is None
