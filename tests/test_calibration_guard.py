"""Accuracy guard: parity numbers, what it guards (pass/fail or classes), the failure message, and a real run
stopped by an impossible budget."""

import numpy as np
import pytest

from calibration.guard import GuardError, GuardMeasure, check_parity, failure_message
from inspector.decision import DecisionPolicy


def _probs(top, n_classes=3, confidence=0.8):
    out = np.full((len(top), n_classes), (1 - confidence) / (n_classes - 1))
    out[np.arange(len(top)), top] = confidence
    return out


def test_parity_numbers():
    labels = np.array([0, 0, 1, 2, 1, 0, 2, 2, 1, 0])
    float_probs = _probs(labels)  # float model: all right
    quant_top = labels.copy()
    quant_top[[1, 4]] = [2, 0]  # converted model: a good part now looks defective, a defect now looks good
    check = check_parity(
        float_probs,
        _probs(quant_top),
        labels,
        good_index=0,
        policy=DecisionPolicy(threshold=0.5),
        budget_pp=10.0,
        kind="int8",
    )
    assert check.float_accuracy == 1.0 and check.quant_accuracy == 0.8
    assert check.float_decision_accuracy == 1.0 and check.quant_decision_accuracy == 0.8
    assert check.drop_pp == pytest.approx(20.0) and check.class_drop_pp == pytest.approx(20.0) and not check.passed
    assert check.agreement == 0.8
    assert check.float_escape.count == 0 and check.quant_escape.count == 1 and check.quant_escape.total == 6
    assert check.float_false_reject.count == 0 and check.quant_false_reject.count == 1
    assert check.max_abs_score_diff == pytest.approx(0.7)  # defect score 0.2 -> 0.9
    assert check.measure == GuardMeasure.EITHER and check.drift_warning() is None
    assert (
        "int8: pass/fail accuracy 80.00% vs float 100.00% (drop +20.00 pp); class accuracy 80.00% vs float "
        "100.00% (drop +20.00 pp); budget 10.00 pp (either)"
    ) in check.summary()
    assert check_parity(float_probs, float_probs, labels, 0, DecisionPolicy(), budget_pp=0.0).passed


def test_a_defect_named_as_another_kind_but_still_failed_passes_with_a_warning():
    """Two of ten images change their defect kind (a crack called a scratch) while every part is still decided
    right: guarding either measure or decisions it passes, with a warning about the defect kinds; guarding
    classes it fails."""
    labels = np.array([0, 0, 1, 2, 1, 0, 2, 2, 1, 0])
    quant_top = labels.copy()
    quant_top[[2, 6]] = [2, 1]
    args = (_probs(labels), _probs(quant_top), labels, 0, DecisionPolicy(threshold=0.5), 1.0, "int8")
    either = check_parity(*args)
    assert either.decision_drop_pp == 0.0 and either.class_drop_pp == pytest.approx(20.0)
    assert either.passed and either.drop_pp == 0.0
    assert "class accuracy +20.00 pp below float" in either.drift_warning()
    assert check_parity(*args, measure="decision").passed
    classes = check_parity(*args, measure="classes")
    assert classes.measure == GuardMeasure.CLASSES and classes.drop_pp == pytest.approx(20.0)
    assert not classes.passed and classes.drift_warning() is None
    assert classes.summary().startswith("int8: class accuracy 80.00% vs float 100.00% (drop +20.00 pp); pass/fail")
    assert classes.to_dict()["measure"] == "classes" and classes.to_dict()["passed"] is False


def test_parts_flipping_at_the_threshold_with_the_same_classes_pass_with_a_warning():
    """Scores that move by a few hundredths across a low threshold (0.15) change pass/fail but not the top
    class: quantization noise at the threshold, not lost accuracy. Guarding either measure passes and says
    so; guarding decisions alone refuses it."""
    labels = np.array([0] * 6 + [1] * 4)
    float_probs = np.array([[0.9, 0.1]] * 5 + [[0.86, 0.14]] + [[0.84, 0.16]] + [[0.2, 0.8]] * 3)
    quant_probs = float_probs.copy()
    quant_probs[5] = [0.83, 0.17]  # a good part now just over the threshold: a false reject
    quant_probs[6] = [0.87, 0.13]  # a defect now just under it: an escape
    args = (float_probs, quant_probs, labels, 0, DecisionPolicy(threshold=0.15), 1.0, "int8")
    either = check_parity(*args)
    assert either.class_drop_pp == 0.0 and either.decision_drop_pp == pytest.approx(20.0) and either.passed
    warning = either.drift_warning()
    assert "decides 20.00 pp more parts wrong at threshold 0.1500" in warning
    assert "escapes 1 vs float 0, false rejects 1 vs 0" in warning
    assert not check_parity(*args, measure="decision").passed
    assert check_parity(*args, measure="classes").passed


def test_pass_fail_accuracy_counts_an_escape_as_wrong_and_review_as_not_wrong():
    """Threshold 0.5 with a review band 0.4-0.6: a good part moved into the band is not decided wrong (a
    person looks at it), a defect moved below it is (an escape); and a model that passes every part does
    not beat one that sends every part to review."""
    labels = np.array([0, 0, 0, 1, 1])
    float_probs = np.array([[0.9, 0.1]] * 3 + [[0.1, 0.9]] * 2)
    quant_probs = float_probs.copy()
    quant_probs[0] = [0.55, 0.45]  # good part into the review band: still top-1 good
    quant_probs[3] = [0.7, 0.3]  # defect below the band: an escape
    policy = DecisionPolicy(threshold=0.5, review_low=0.4, review_high=0.6)
    check = check_parity(float_probs, quant_probs, labels, 0, policy, 1.0)
    assert check.float_decision_accuracy == 1.0 and check.quant_decision_accuracy == pytest.approx(0.8)
    assert check.quant_accuracy == pytest.approx(0.8)  # top-1 sees the escape too
    assert check.quant_escape.count == 1 and check.quant_false_reject.count == 0
    assert not check.passed and check.drop_pp == pytest.approx(20.0)
    all_review, all_pass = np.full((5, 2), 0.5), np.tile([0.9, 0.1], (5, 1))
    constant = check_parity(all_review, all_pass, labels, 0, policy, 1.0, measure="decision")
    assert constant.float_decision_accuracy == 1.0 and constant.quant_decision_accuracy == pytest.approx(0.6)
    assert not constant.passed  # two escapes where float sent both defects to a person
    # Both are constant models with the same top class (the verdict refuses them): either measure passes,
    # and says that decisions moved.
    assert check_parity(all_review, all_pass, labels, 0, policy, 1.0).drift_warning()


def test_a_budget_finer_than_one_image_is_widened_to_one_image():
    """90 validation images: 1 pp is 0.9 of an image, so one changed image (1.11 pp) passes a 1 pp budget, two
    do not; a budget of 0 stays strict, and so does a split where one image is over twice the budget; a split
    large enough to resolve the budget keeps it as given."""
    labels = np.array([0] * 60 + [1] * 30)
    float_probs = _probs(labels, 2)

    def check(flipped, budget, n=90):
        quant_top = labels[:n].copy()
        quant_top[:flipped] = 1 - quant_top[:flipped]
        return check_parity(float_probs[:n], _probs(quant_top, 2), labels[:n], 0, DecisionPolicy(), budget)

    one = check(1, 1.0)
    assert one.drop_pp == pytest.approx(100 / 90) and one.allowed_pp == pytest.approx(100 / 90) and one.passed
    assert "widened to one of 90 images: 1.11 pp" in one.summary() and one.to_dict()["allowed_pp"] == one.allowed_pp
    assert not check(2, 1.0).passed
    assert not check(1, 0.0).passed and check(0, 0.0).passed
    assert check(1, 2.0).allowed_pp == 2.0 and check(1, 2.0).passed
    assert check(1, 1.0, n=40).allowed_pp == 1.0 and not check(1, 1.0, n=40).passed  # 2.5 pp: over twice the budget
    large = check_parity(
        np.tile(float_probs, (3, 1)), np.tile(float_probs, (3, 1)), np.tile(labels, 3), 0, DecisionPolicy(), 0.5
    )
    assert large.allowed_pp == 0.5  # 270 images: one image is 0.37 pp, finer than the budget


def test_failure_message_lists_what_to_try():
    labels = np.array([0, 1, 1, 0])
    check = check_parity(
        _probs(labels, 2), _probs(1 - labels, 2), labels, 0, DecisionPolicy(), 1.0, "int8 (full integer)"
    )
    message = failure_message([check], representative_size=300, remedy_tried=False, fallback_layers=5)
    assert message.startswith("accuracy guard failed")
    assert "of validation both pass/fail accuracy at the threshold and class accuracy" in message
    assert "int8 (full integer): pass/fail accuracy 0.00% vs float 100.00%" in message
    hints = ("--precision float16", "--set seed=N", "--remedy float-fallback", "--representative-size 600")
    places = [message.index(hint) for hint in (*hints, "--accuracy-budget")]
    assert places == sorted(places)  # what was measured to work first (docs/training.md)
    again = failure_message([check], 300, remedy_tried=True, fallback_layers=5)
    assert "--fallback-layers 10" in again and "--remedy float-fallback:" not in again


def test_impossible_budget_stops_the_run_after_trying_the_remedy(trained_run, tmp_path):
    from calibration.calibrate import calibrate
    from tests.fixtures_bundle import fixture_options

    out = tmp_path / "never.inspector"
    with pytest.raises(GuardError) as info:
        calibrate(
            trained_run,
            out,
            fixture_options(
                precision="int8", accuracy_budget=-100.0, remedy="auto", fallback_layers=3, evaluate_test=False
            ),
        )
    message = str(info.value)
    assert "accuracy guard failed" in message and "what to try" in message
    assert "int8 (full integer)" in message and "int8 (mixed: float fallback)" in message
    assert "report:" in message
    assert not out.exists()
    result = info.value.result
    full, mixed = result.candidates
    # The remedy was measured: the mixed model keeps the 3 worst layers float and was run in the edge interpreter.
    assert len(mixed.conversion.float_nodes) == 3 and mixed.conversion.float_ops
    # uint8 I/O unless one of the 3 layers kept float reads the input directly (which ones depends on the
    # weights); either way the bundle records the type the model really takes.
    assert mixed.bundle.manifest.input.dtype in ("uint8", "float32")
    assert mixed.bundle.manifest.input == mixed.conversion.input
    assert mixed.val_probs.shape == full.val_probs.shape
    assert result.sensitivity[0].rmse_over_scale >= result.sensitivity[-1].rmse_over_scale
    page = result.report_html.read_text()
    assert "Calibration stopped" in page and "Layers with the largest INT8 error" in page
