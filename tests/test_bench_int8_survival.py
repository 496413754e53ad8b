"""The INT8 survival benchmark on the shared tiny run: one draw, one form; figures, not an accuracy claim."""

import json

import numpy as np
import pytest

from bench.int8_survival import main, measure

pytestmark = pytest.mark.slow


def test_measure_compares_with_the_float_scores():
    labels = np.array([0, 0, 0, 1, 1])  # class 0 is good
    good_probs = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    float_probs = np.stack([good_probs, 1 - good_probs], axis=1)
    moved = float_probs.copy()
    moved[:, 0] -= 0.05
    moved[:, 1] += 0.05
    same, shifted = measure(float_probs, float_probs, labels, 0), measure(moved, float_probs, labels, 0)
    assert same["mean_score_change"] == 0 and same["roc_auc"] == 1.0
    assert shifted["mean_score_change"] == pytest.approx(0.05) and shifted["roc_auc"] == 1.0
    assert shifted["escapes_at_5pct_false_reject"] == 0 and shifted["defects"] == 2


def test_survey_writes_one_conversion_per_draw_and_form(trained_run, tmp_path):
    out = tmp_path / "survival.json"
    args = [str(trained_run), "--representative-seeds", "0", "--forms", "one_partition"]
    assert main([*args, "--representative-size", "20", "--out", str(out)]) == 0
    (run,) = json.loads(out.read_text())["runs"]
    assert run["float"]["mean_score_change"] == 0
    (int8,) = run["int8"]
    assert int8["representative_seed"] == 0 and int8["hard_swish"] == "one_partition"
    assert 0 <= int8["mean_score_change"] <= 1 and 0 <= int8["roc_auc"] <= 1
    assert run["mean_score_change_range"] == [int8["mean_score_change"]] * 2
