"""training.report and the run folder's metrics: files written, numbers consistent with each other and
with the saved model's own predictions on the saved split."""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from training.report import PLOTS


def test_report_files_written(trained_run):
    html = (trained_run / "report.html").read_text()
    for name in PLOTS.values():
        path = trained_run / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f'src="{name}"' in html
    assert "escape rate" in html and "false-reject rate" in html and "oversample" in html


def test_report_names_the_test_images_to_look_at(trained_run):
    """Escapes, false rejects and class mistakes are shown as model inputs with their file names relative to
    the data folder (the file a person relabels); the counts follow from predictions.json."""
    html = (trained_run / "report.html").read_text()
    run = json.loads((trained_run / "run.json").read_text())
    metrics = json.loads((trained_run / "metrics.json").read_text())
    test = json.loads((trained_run / "predictions.json").read_text())["test"]
    probs, labels = np.array(test["probabilities"]), np.array(test["labels"])
    wrong = int((probs.argmax(1) != labels).sum())
    d = metrics["test"]["decision"]

    def tiles(heading):
        section = html[html.index(f"<h2>{heading}</h2>") :]
        return re.findall(r"<code class='name'>([^<]+)</code>", section[: section.index("</section>")])

    shown = tiles("Misclassified test images")
    assert len(shown) == min(8, wrong) and f"{wrong} of {len(labels)} test images got the wrong class" in html
    gated = tiles("Escapes and false rejects (test)")
    assert len(gated) == min(8, d["escapes"]) + min(8, d["false_rejects"])
    for name in shown + gated:
        assert name in test["paths"] and (Path(run["dataset_root"]) / name).is_file()
    assert len(re.findall(r'alt="[^"]+ heatmap"', html)) == len(shown + gated)  # each beside its image
    assert "misclassified.png" not in html and "{" not in html[html.index("<body>") :]


def test_metrics_consistent_with_confusion_matrix(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    labels, good = metrics["labels"], metrics["good_class"]
    split = json.loads((trained_run / "split.json").read_text())
    for name in ("val", "test"):
        part = metrics[name]
        cm = np.array(part["confusion_matrix"])
        assert cm.shape == (len(labels), len(labels))
        assert cm.sum() == part["samples"] == len(split["splits"][name])
        assert part["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
        for i, label in enumerate(labels):
            stats = part["per_class"][label]
            assert stats["support"] == cm[i].sum()
            assert stats["recall"] == pytest.approx(cm[i, i] / cm[i].sum() if cm[i].sum() else 0.0)
            assert stats["precision"] == pytest.approx(cm[i, i] / cm[:, i].sum() if cm[:, i].sum() else 0.0)
        pf = part["pass_fail"]
        g = labels.index(good)
        assert pf["goods"] == cm[g].sum() and pf["defects"] == cm.sum() - cm[g].sum()
        assert pf["escape_rate"] == pytest.approx(pf["escapes"] / pf["defects"])
        assert pf["false_reject_rate"] == pytest.approx(pf["false_rejects"] / pf["goods"])
    assert metrics["imbalance"]["method"] == "oversample"
    history = json.loads((trained_run / "history.json").read_text())
    assert metrics["training"]["epochs"] == len(history) == 2


def test_metrics_reproduced_from_saved_model_and_split(trained_run):
    """metrics.json follows from predictions.json, and those are what model.keras predicts for the test
    images named in split.json (re-read and re-prepared here). Compared as probabilities: the fixture
    model is near-constant, so its arg-max can flip with float rounding between batch sizes."""
    import keras

    import training.model  # noqa: F401
    from inspector.dataset import SplitManifest
    from inspector.imageio import load_image
    from inspector.metrics import classification_report
    from inspector.preprocess import Preprocessor, PreprocessSpec

    run = json.loads((trained_run / "run.json").read_text())
    metrics = json.loads((trained_run / "metrics.json").read_text())
    predictions = json.loads((trained_run / "predictions.json").read_text())
    split = SplitManifest.load(trained_run / "split.json")
    assert run["split_sha256"] == hashlib.sha256((trained_run / "split.json").read_bytes()).hexdigest()
    assert run["dataset_fingerprint"] == split.fingerprint and run["labels"] == split.classes
    for name in ("val", "test"):
        saved = predictions[name]
        assert saved["paths"] == [s.path for s in split.splits[name]]
        assert saved["labels"] == split.labels(name).tolist()
        again = classification_report(
            np.array(saved["probabilities"]), saved["labels"], run["labels"], run["good_class"], metrics["threshold"]
        )
        assert again["confusion_matrix"] == metrics[name]["confusion_matrix"]
        assert again["pass_fail"]["escapes"] == metrics[name]["pass_fail"]["escapes"]
        assert again["pass_fail"]["false_rejects"] == metrics[name]["pass_fail"]["false_rejects"]

    prep = Preprocessor(PreprocessSpec.model_validate(run["preprocess"]))
    images = np.stack([prep.prepare(load_image(p)) for p in split.paths("test", run["dataset_root"])])
    model = keras.models.load_model(trained_run / "model.keras")
    probs = model.predict(images.astype(np.float32), verbose=0)
    np.testing.assert_allclose(probs, np.array(predictions["test"]["probabilities"]), atol=1e-5)
