"""The shared trained_run fixture honours the RUN_DIR contract other areas rely on."""

import json

import numpy as np


def test_trained_run_contract(trained_run):
    import keras

    import training.model  # noqa: F401  registers the custom layer
    from inspector.preprocess import PreprocessSpec
    from inspector.runfolder import RunFolder, RunManifest

    run = json.loads((trained_run / "run.json").read_text())
    assert set(run) == {
        "labels",
        "good_class",
        "preprocess",
        "backbone",
        "input_size",
        "weights",
        "dataset_root",
        "dataset_fingerprint",
        "split_sha256",
        "name",
        "created",
        "seed",
        "tool_version",
        "epochs",
        "best_epoch",
        "kept_epoch",
        "operating_point",
        "deployability",
        "init_from",
    }
    assert run["init_from"] is None  # trained from scratch, not warm-started (--init-from)
    manifest = RunManifest.load(RunFolder(trained_run))
    metrics = json.loads((trained_run / "metrics.json").read_text())
    # One threshold everywhere: run.json's policy is the one metrics.json reports at.
    assert manifest.operating_point.policy.threshold == metrics["threshold"]
    assert manifest.deployability == metrics["deployability"]
    assert manifest.verdict().status.value in ("DEPLOYABLE", "NOT DEPLOYABLE")
    assert 1 <= manifest.best_epoch <= manifest.epochs == 2
    assert manifest.kept_epoch == 2  # the last epoch's weights (early_stopping.restore_best keeps the best)
    assert run["labels"] == ["crack", "good", "scratch", "spot", "stain"]
    assert run["good_class"] == "good" and run["input_size"] == [64, 64]
    spec = PreprocessSpec.model_validate(run["preprocess"])
    assert (spec.width, spec.height) == (64, 64)
    model = keras.models.load_model(trained_run / "model.keras")
    assert model.output_shape == (None, 5)
    probs = model.predict(np.zeros((2, 64, 64, 3), np.float32), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    for name in ("split.json", "config.json", "metrics.json", "predictions.json", "history.json", "report.html"):
        assert (trained_run / name).is_file(), name
