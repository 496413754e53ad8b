"""training.imbalance: balanced class weights and oversampling probabilities, by hand-computed numbers."""

import numpy as np
import pytest

from training.imbalance import balanced_class_weights, oversampling_weights, plan_imbalance

LABELS = ["crack", "good", "spot"]


def test_balanced_class_weights_imbalanced_set():
    y = np.array([1] * 90 + [0] * 8 + [2] * 2)  # 100 images: 90 good, 8 crack, 2 spot
    weights = balanced_class_weights(y, 3)
    assert weights == pytest.approx([100 / (3 * 8), 100 / (3 * 90), 100 / (3 * 2)])
    # every class carries the same total weight: n / k
    counts = np.bincount(y, minlength=3)
    assert counts * np.array(weights) == pytest.approx([100 / 3] * 3)


def test_absent_class_gets_zero_weight():
    assert balanced_class_weights(np.array([0, 0, 1]), 3) == pytest.approx([0.5, 1.0, 0.0])


def test_oversampling_uniform_and_good_fraction():
    y = np.array([1] * 90 + [0] * 8 + [2] * 2)
    assert oversampling_weights(y, 3, good_index=1) == pytest.approx([1 / 3] * 3)
    probs = oversampling_weights(y, 3, good_index=1, good_fraction=0.5)
    assert probs == pytest.approx([0.5 * 8 / 10, 0.5, 0.5 * 2 / 10])


def test_plan_reports_what_is_used():
    y = np.array([1] * 6 + [0] * 3 + [2] * 1)
    plan = plan_imbalance(y, LABELS, "good", "class_weights")
    assert plan.sampling_weights is None
    report = plan.to_dict()
    assert report["method"] == "class_weights"
    assert report["train_counts"] == {"crack": 3, "good": 6, "spot": 1}
    assert report["class_weights"]["spot"] == pytest.approx(10 / 3)
    assert "class weights" in plan.describe() and "spot 3.33" in plan.describe()
    over = plan_imbalance(y, LABELS, "good", "oversample")
    assert over.class_weights is None and "sampling_probabilities" in over.to_dict()
    none = plan_imbalance(y, LABELS, "good", "none")
    assert none.class_weights is None and none.sampling_weights is None
    with pytest.raises(ValueError, match="unknown imbalance method"):
        plan_imbalance(y, LABELS, "good", "smote")
