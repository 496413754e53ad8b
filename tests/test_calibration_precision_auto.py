"""`--precision auto` (the default) keeps INT8 only when it holds on validation, else deploys float16.

The model that loses in INT8 is built, not trained: the shared run's model with a zero classifier kernel
and biases that favour "good" over "crack" by 0.002. The float model (and float16, whose 16-bit biases keep
that margin) names every image "good"; in INT8 the two logits fall on one quantization step, so the tie
goes to the first class, "crack". The validation split is left without crack images, so float is right
on every good part and INT8 on none: a class-accuracy loss no budget allows, with no training involved.
"""

import json
import shutil

import numpy as np
import pytest

from app.cli import main
from calibration.calibrate import int8_shortfall
from calibration.guard import check_parity
from inspector.bundle import Bundle, Precision
from inspector.decision import DecisionPolicy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tied_run(trained_run, tmp_path_factory):
    import keras

    import training.model  # noqa: F401  registers the custom layer

    run_dir = tmp_path_factory.mktemp("tied") / "run"
    shutil.copytree(trained_run, run_dir, ignore=shutil.ignore_patterns("checkpoints", "*.png"))
    labels = json.loads((run_dir / "run.json").read_text())["labels"]
    good, first = labels.index("good"), 0
    assert first != good, labels
    model = keras.models.load_model(run_dir / "model.keras")
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()
    bias = np.full_like(bias, -2.0)
    bias[good], bias[first] = 2.0, 1.998
    logits.set_weights([np.zeros_like(kernel), bias])
    model.save(run_dir / "model.keras")
    split = json.loads((run_dir / "split.json").read_text())
    split["splits"]["val"] = [row for row in split["splits"]["val"] if row[1] != labels[first]]
    (run_dir / "split.json").write_text(json.dumps(split))
    return run_dir


def test_auto_deploys_float16_when_int8_loses_class_accuracy(tied_run, tmp_path, capsys):
    out = tmp_path / "tied.inspector"
    code = main(["calibrate", str(tied_run), "--out", str(out), "--no-test", "--force"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "precision auto: INT8 against float on validation" in printed and "deployed float16" in printed
    manifest = Bundle.load(out).manifest
    assert manifest.precision == Precision.FLOAT16
    choice = manifest.metrics["precision_choice"]
    assert choice["asked"] == "auto" and choice["deployed"] == "float16" and "class accuracy" in choice["why"]
    page = (tmp_path / "tied_report" / "report.html").read_text()
    assert "Precision auto: INT8 against float" in page


def test_int8_that_holds_on_both_measures_is_kept(int8_bundle):
    choice = Bundle.load(int8_bundle).manifest.metrics["precision_choice"]
    assert choice == {"asked": "auto", "deployed": "int8", "why": None}


def _candidate(float_probs, quant_probs, labels, budget=1.0):
    from types import SimpleNamespace

    policy = DecisionPolicy(threshold=0.5)
    return SimpleNamespace(parity=check_parity(float_probs, quant_probs, labels, 0, policy, budget))


def test_int8_shortfall_needs_every_measure_in_budget():
    labels = np.array([0] * 50 + [1] * 25 + [2] * 25)
    right = np.eye(3)[labels] * 0.9 + 0.1 / 3
    # Ten defects of kind 1 named kind 2: pass/fail the same, class accuracy 10 pp lower.
    renamed = right.copy()
    renamed[50:60] = np.eye(3)[2] * 0.9 + 0.1 / 3
    assert int8_shortfall(_candidate(right, right, labels)) is None
    why = int8_shortfall(_candidate(right, renamed, labels))
    assert why is not None and "class accuracy -10.00 pp (budget 1.00)" in why and "pass/fail" not in why
    assert int8_shortfall(_candidate(right, renamed, labels, budget=10.0)) is None
    assert int8_shortfall(None) == "INT8 failed the accuracy guard"


def test_int8_shortfall_counts_escapes_over_the_defects_alone():
    """Two false rejects fixed and two defects let through: accuracy over all images is unchanged, but a
    line pays for escapes. One defect of 50 (2 pp) is within a 1 pp budget widened to one defect."""
    labels = np.array([0] * 50 + [1] * 25 + [2] * 25)
    right = np.eye(3)[labels] * 0.9 + 0.1 / 3
    float_probs = right.copy()
    float_probs[[0, 1]] = [0.4, 0.55, 0.05]  # good parts failed by float
    two = right.copy()
    two[[50, 51]] = [0.6, 0.35, 0.05]  # defects passed by INT8
    check = _candidate(float_probs, two, labels).parity
    assert check.passed and check.decision_drop_pp == 0 and check.class_drop_pp == 0
    why = int8_shortfall(_candidate(float_probs, two, labels))
    assert why is not None and "escapes 2 of 50 defects against float's 0 (+4.00 pp, budget 2.00)" in why
    one = right.copy()
    one[[1, 50]] = float_probs[1], two[50]
    assert int8_shortfall(_candidate(float_probs, one, labels)) is None
