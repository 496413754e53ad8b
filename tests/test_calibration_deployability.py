"""An unfit model gets NOT DEPLOYABLE and no bundle from `inspector calibrate`; --force writes one that says so.

The unfit model is built, not trained: the shared run's model with a zero classifier kernel and a bias
that favours the good class predicts "good" with the same probability for every image.
"""

import json
import shutil

import numpy as np
import pytest

from app.cli import main
from inspector.bundle import Bundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def constant_run(trained_run, tmp_path_factory):
    import keras

    import training.model  # noqa: F401  registers the custom layer

    run_dir = tmp_path_factory.mktemp("constant") / "run"
    shutil.copytree(trained_run, run_dir, ignore=shutil.ignore_patterns("checkpoints", "*.png"))
    model = keras.models.load_model(run_dir / "model.keras")
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()
    good = json.loads((run_dir / "run.json").read_text())["labels"].index("good")
    bias = np.full_like(bias, -2.0)
    bias[good] = 2.0
    logits.set_weights([np.zeros_like(kernel), bias])
    model.save(run_dir / "model.keras")
    return run_dir


def test_constant_model_is_refused_without_a_bundle(constant_run, tmp_path, capsys):
    out = tmp_path / "constant.inspector"
    code = main(["calibrate", str(constant_run), "--out", str(out), "--precision", "float32", "--no-test"])
    err = capsys.readouterr().err
    assert code == 4
    assert "NOT DEPLOYABLE" in err and "constant prediction" in err and "--force" in err
    assert not out.exists()
    page = (tmp_path / "constant_report" / "report.html").read_text()
    body = page[page.index("<body>") :]
    assert body.index("NOT DEPLOYABLE") < body.index("<img")  # the verdict is at the top
    assert "No bundle was written" in page


def test_force_writes_a_bundle_that_records_the_verdict(constant_run, tmp_path, capsys):
    out = tmp_path / "forced.inspector"
    code = main(["calibrate", str(constant_run), "--out", str(out), "--precision", "float32", "--no-test", "--force"])
    printed = capsys.readouterr().out
    assert code == 0 and "NOT DEPLOYABLE" in printed
    verdict = Bundle.load(out).manifest.metrics["deployability"]
    assert verdict["status"] == "NOT DEPLOYABLE"
    assert "constant_prediction" in [r["problem"] for r in verdict["reasons"]]


def test_an_unfit_int8_model_says_whether_quantization_is_what_fails(constant_run, tmp_path, capsys):
    out = tmp_path / "constant_int8.inspector"
    code = main(["calibrate", str(constant_run), "--out", str(out), "--no-test"])
    err = capsys.readouterr().err
    assert code == 4 and not out.exists()
    assert "note: the float model is NOT DEPLOYABLE here either (constant prediction" in err


def test_quantization_note_names_the_cause():
    from calibration.calibrate import quantization_note
    from inspector.decision import DecisionPolicy
    from inspector.deployability import assess

    is_defect = np.array([False] * 50 + [True] * 50)
    policy = DecisionPolicy(threshold=0.5)
    separated = assess(np.where(is_defect, 0.9, 0.1), is_defect, policy)
    escaping = assess(np.where(is_defect, 0.4, 0.1), is_defect, policy)
    assert separated.deployable and not escaping.deployable
    assert "INT8 quantization is what fails" in quantization_note(separated)
    assert "--precision float16" in quantization_note(separated)
    blamed = quantization_note(escaping)
    assert "NOT DEPLOYABLE here either (escapes 100.0% (50/50)" in blamed and "float16" not in blamed
