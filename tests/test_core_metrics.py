"""inspector.metrics: numbers checked by hand on small cases; the module never imports TensorFlow."""

import subprocess
import sys

import numpy as np
import pytest

from inspector.metrics import (
    classification_report,
    confusion_matrix,
    misclassified,
    pass_fail,
    per_class_prf,
    roc_auc,
    roc_curve,
)


def test_confusion_matrix_rows_true_columns_predicted():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 0], 3)


def test_per_class_prf():
    cm = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    prf = per_class_prf(cm, ["a", "b", "c"])
    assert prf["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert prf["b"]["precision"] == pytest.approx(0.5) and prf["b"]["recall"] == 1.0
    assert prf["b"]["f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert prf["c"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})


def test_roc_auc_with_ties_and_degenerate():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([0.5, 0.5, 0.5], [0, 1, 1]) == pytest.approx(0.5)
    assert roc_auc([0.1, 0.9], [0, 1]) == 1.0
    assert np.isnan(roc_auc([0.1, 0.2], [1, 1]))


def test_roc_curve_matches_auc():
    rng = np.random.default_rng(0)
    positive = rng.random(200) < 0.3
    scores = rng.normal(positive * 1.0, 1.0)
    fpr, tpr, thr = roc_curve(scores, positive)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(scores, positive))
    assert np.all(np.diff(thr) < 0)


def test_pass_fail_escapes_and_false_rejects():
    scores = [0.1, 0.6, 0.4, 0.9, 0.5]
    is_defect = [False, False, True, True, True]
    pf = pass_fail(scores, is_defect, threshold=0.5)
    assert (pf.defects, pf.goods, pf.escapes, pf.false_rejects) == (3, 2, 1, 1)
    assert pf.escape_rate == pytest.approx(1 / 3) and pf.false_reject_rate == 0.5


def test_classification_report_consistent():
    labels = ["crack", "good", "spot"]
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    y = [0, 1, 2, 2, 1]
    rep = classification_report(probs, y, labels, "good", threshold=0.5)
    assert rep["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    assert rep["accuracy"] == pytest.approx(3 / 5)
    pf = rep["pass_fail"]
    # defect scores 1 - p(good): 0.8, 0.2, 0.5, 0.8, 0.7 -> goods at 0.2 (pass), 0.7 (fail)
    assert (pf["escapes"], pf["false_rejects"], pf["defects"], pf["goods"]) == (0, 1, 3, 2)
    assert pf["roc_auc"] == pytest.approx(roc_auc([0.8, 0.2, 0.5, 0.8, 0.7], [1, 0, 1, 1, 0]))
    assert misclassified(probs, y) == [4, 2]  # 0.6-confident mistake first, then 0.5


def test_no_tensorflow_import():
    code = "import inspector.metrics, sys; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
