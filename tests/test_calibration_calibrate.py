"""The calibration pipeline on the shared trained run: a bundle the edge loads and that decides like the model."""

import json

import numpy as np
import pytest

from inspector.bundle import Bundle, Precision
from inspector.dataset import SplitManifest
from inspector.decision import defect_score
from inspector.imageio import load_image
from inspector.preprocess import Preprocessor, PreprocessSpec


@pytest.fixture(scope="module")
def val_set(trained_run):
    split = SplitManifest.load(trained_run / "split.json")
    run = json.loads((trained_run / "run.json").read_text())
    pre = Preprocessor(PreprocessSpec.model_validate(run["preprocess"]))
    images = np.stack([pre.prepare(load_image(p)) for p in split.paths("val")])
    return images, split.labels("val"), run


def test_int8_bundle_runs_in_edge_interpreter_with_uint8_input(int8_bundle, trained_run, val_set):
    import keras

    import training.model  # noqa: F401
    from inspector.inference import Classifier

    bundle = Bundle.load(int8_bundle)
    m = bundle.manifest
    assert m.precision == Precision.INT8
    assert m.input.dtype == "uint8" and m.output.dtype == "uint8" and m.input.shape == [1, 64, 64, 3]
    clf = Classifier(bundle, threads=1)
    assert clf.runner.input_dtype == np.uint8
    assert clf.runner.interpreter.get_input_details()[0]["quantization"] == pytest.approx(
        (m.input.scale, m.input.zero_point)
    )
    images, labels, run = val_set
    quant = clf.predict_batch(images)
    float_probs = keras.models.load_model(trained_run / "model.keras").predict(images.astype(np.float32), verbose=0)
    # trained_run is near chance by design: only what holds for any weights is asserted. INT8 keeps every
    # probability within a quantization tolerance of float; top-1 agreement then depends on how many
    # images are near-ties, so the recorded agreement may differ from this one only on near-ties.
    assert quant.shape == float_probs.shape and quant.dtype == np.float32
    assert np.allclose(quant.sum(1), 1.0, atol=0.05)
    assert np.abs(quant - float_probs).max() < 0.1
    agreement = float((quant.argmax(1) == float_probs.argmax(1)).mean())
    top2 = np.sort(float_probs, axis=1)[:, -2:]
    near_ties = float((top2[:, 1] - top2[:, 0] < 1e-3).mean())
    assert m.metrics["val_top1_agreement"] == pytest.approx(agreement, abs=near_ties + 1e-4)
    assert m.labels == run["labels"] and m.good_class == run["good_class"]
    assert m.provenance.split_sha256 == run["split_sha256"]


def test_full_integer_per_channel_and_static(calibrated):
    from ai_edge_litert import interpreter as litert

    conversion = calibrated.chosen.conversion
    assert conversion.kind == "int8 (full integer)" and conversion.float_ops == {}
    it = litert.Interpreter(
        model_content=conversion.model,
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    tensors = it.get_tensor_details()
    conv_weights = [
        t
        for t in tensors
        if t["dtype"] == np.int8 and len(t["shape"]) == 4 and len(t["quantization_parameters"]["scales"]) > 1
    ]
    assert conv_weights, "expected per-channel quantized convolution weights"
    assert all((np.asarray(t["shape_signature"]) >= 0).all() for t in tensors)


def test_bundle_decides_at_the_training_runs_threshold(int8_bundle, trained_run, val_set):
    """One threshold everywhere: the bundle's policy is the one the training run chose and reported at, and
    the bundle's validation rates are counted at it with the edge classifier."""
    from inspector.inference import Classifier
    from inspector.runfolder import RunFolder, RunManifest

    bundle = Bundle.load(int8_bundle)
    m = bundle.manifest
    run = RunManifest.load(RunFolder(trained_run))
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert m.decision == run.operating_point.policy
    assert m.decision.threshold == metrics["threshold"]
    images, labels, _ = val_set
    scores = defect_score(Classifier(bundle, threads=1).predict_batch(images), m.good_index)
    is_defect = labels != m.good_index
    low = m.decision.review_low if m.decision.review_low is not None else m.decision.threshold
    high = m.decision.review_high if m.decision.review_high is not None else m.decision.threshold
    op = m.metrics["operating_point"]
    assert op["target"] == run.operating_point.target.value and "training run" in op["note"]
    assert op["escape"]["count"] == int(((scores < low) & is_defect).sum())
    assert op["escape"]["total"] == int(is_defect.sum())
    assert 0.0 <= op["escape"]["low"] <= op["escape"]["rate"] <= op["escape"]["high"] <= 1.0
    assert op["false_reject"]["count"] == int(((scores >= high) & ~is_defect).sum())


def test_bundle_metrics(calibrated):
    m = calibrated.bundle.manifest
    for key in (
        "val_accuracy",
        "val_float_accuracy",
        "val_accuracy_drop_pp",
        "val_decision_accuracy",
        "val_decision_drop_pp",
        "val_escape_rate",
        "val_false_reject_rate",
        "test_accuracy",
        "test_float_accuracy",
        "test_escape_rate",
        "test_false_reject_rate",
        "model_bytes_keras",
    ):
        assert key in m.metrics, key
    assert m.metrics["representative"]["size"] == 32
    assert m.metrics["conversion"]["bytes"] == m.model_bytes
    assert set(m.metrics["validation"]["per_class"]) == set(m.labels)
    assert m.metrics["val_accuracy"] == pytest.approx(m.metrics["validation"]["accuracy"], abs=1e-4)
    assert m.metrics["guard_on"] == "either"
    assert m.camera is None and m.preprocess == calibrated.run.spec


def test_not_a_run_dir(tmp_path):
    from calibration.calibrate import calibrate
    from inspector.runfolder import RunFolderError

    with pytest.raises(RunFolderError, match="missing model.keras"):
        calibrate(tmp_path, tmp_path / "x.inspector")
