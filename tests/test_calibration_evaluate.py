"""`inspector evaluate`: a bundle on a labelled folder, through the edge interpreter, same metrics as calibrate."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from calibration.evaluate import evaluate_bundle, format_metrics
from inspector.bundle import Bundle
from inspector.dataset import scan_folder
from inspector.decision import defect_score
from inspector.imageio import load_image
from inspector.preprocess import Preprocessor


def test_metrics_match_the_edge_classifier(int8_bundle, synth_root):
    from inspector.inference import Classifier

    result = evaluate_bundle(int8_bundle, synth_root, threads=1)
    bundle = Bundle.load(int8_bundle)
    m = bundle.manifest
    scan = scan_folder(synth_root)
    assert result.metrics["samples"] == len(scan.samples)
    pre = Preprocessor(m.preprocess)
    clf = Classifier(bundle, threads=1)
    probs = np.stack([clf.probabilities(pre.prepare(load_image(synth_root / s.path))) for s in scan.samples])
    labels = np.array([m.labels.index(s.label) for s in scan.samples])
    assert result.metrics["accuracy"] == pytest.approx(float((probs.argmax(1) == labels).mean()))
    scores = defect_score(probs, m.good_index)
    is_defect = labels != m.good_index
    d = result.metrics["decision"]
    assert d["threshold"] == m.decision.threshold
    low = m.decision.review_low if m.decision.review_low is not None else m.decision.threshold
    high = m.decision.review_high if m.decision.review_high is not None else m.decision.threshold
    assert d["escape"]["count"] == int(((scores < low) & is_defect).sum())
    assert d["false_reject"]["count"] == int(((scores >= high) & ~is_defect).sum())
    good = result.metrics["per_class"][m.good_class]
    assert good["passed"] + good["review"] + good["failed"] == good["support"]
    text = format_metrics(result.metrics)
    assert "escape" in text and "false reject" in text and m.good_class in text


def test_split_file_reproduces_calibration_numbers(int8_bundle, trained_run, synth_root):
    result = evaluate_bundle(int8_bundle, synth_root, split_file=trained_run / "split.json", split="val")
    op = Bundle.load(int8_bundle).manifest.metrics["operating_point"]
    d = result.metrics["decision"]
    assert (d["escape"]["count"], d["escape"]["total"]) == (op["escape"]["count"], op["escape"]["total"])
    assert (d["false_reject"]["count"], d["false_reject"]["total"]) == (
        op["false_reject"]["count"],
        op["false_reject"]["total"],
    )


def test_unknown_class_and_corrupt_files(int8_bundle, synth_root, tmp_path):
    data = tmp_path / "line"
    for label in ("good", "crack"):
        shutil.copytree(synth_root / label, data / label)
    (data / "good" / "good_00000.png").write_bytes(b"")
    result = evaluate_bundle(int8_bundle, data)
    assert [s.path for s in result.skipped] == ["good/good_00000.png"]
    assert result.metrics["samples"] == 47
    # A defect kind the bundle never saw is measured as a defect (pass/fail only), not refused.
    (data / "dent").mkdir()
    for i in range(3):
        shutil.copy(synth_root / "crack" / f"crack_0000{i}.png", data / "dent" / f"{i}.png")
    with_unseen = evaluate_bundle(int8_bundle, data)
    assert with_unseen.metrics["samples"] == 47  # accuracy and per-class stay on the bundle's classes
    dent = with_unseen.metrics["unseen_defects"]["dent"]
    assert dent["support"] == 3 and dent["passed"] + dent["review"] + dent["failed"] == 3
    assert "(3 of unseen defect kinds)" in with_unseen.verdict.basis
    assert "dent *" in format_metrics(with_unseen.metrics)


def test_evaluate_command_writes_metrics_without_tensorflow(int8_bundle, synth_root, tmp_path):
    out, report = tmp_path / "eval.json", tmp_path / "report"
    code = (
        "import sys\nfrom app.cli import main\n"
        f"rc = main(['evaluate', {str(int8_bundle)!r}, {str(synth_root)!r}, '--out', {str(out)!r}, "
        f"'--report-dir', {str(report)!r}, '--threads', '1'])\n"
        "assert not [m for m in sys.modules if m.startswith(('tensorflow', 'keras'))], 'TF imported'\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "escape" in proc.stdout and "metrics:" in proc.stdout
    saved = json.loads(out.read_text())
    assert saved["metrics"]["samples"] == 120 and saved["split"] is None
    assert (report / "report.png").stat().st_size > 10_000 and "Per class" in (report / "report.html").read_text()


def test_verdict_flags_training_images_and_explains_an_empty_evaluation(int8_bundle, trained_run, synth_root, tmp_path):
    from calibration.evaluate import NothingToEvaluate
    from inspector.dataset import SplitManifest
    from inspector.deployability import Problem

    trained = len(SplitManifest.load(trained_run / "split.json").splits["train"])
    whole = evaluate_bundle(int8_bundle, synth_root)  # the folder the run was trained on
    reasons = {r.problem: r.message for r in whole.verdict.reasons}
    assert (
        f"({trained}/{whole.metrics['samples']}) of the judged images were used to train"
        in reasons[Problem.TRAINING_IMAGES]
    )
    held_out = evaluate_bundle(int8_bundle, synth_root, split_file=trained_run / "split.json", split="test")
    assert Problem.TRAINING_IMAGES not in {r.problem for r in held_out.verdict.reasons}
    assert held_out.to_dict()["deployability"]["status"] == held_out.verdict.status.value

    moved = tmp_path / "moved"  # the split names files that are no longer there
    moved.mkdir()
    tests = len(SplitManifest.load(trained_run / "split.json").splits["test"])
    with pytest.raises(NothingToEvaluate, match="NOT DEPLOYABLE") as info:
        evaluate_bundle(int8_bundle, moved, split_file=trained_run / "split.json", split="test")
    message = info.value.verdict.reasons[0].message
    assert f"all {tests} skipped ({tests} x cannot read" in message


def test_an_unlikely_point_is_a_note_for_the_bundles_own_policy(int8_bundle, trained_run, synth_root, tmp_path):
    from inspector.decision import DecisionPolicy

    bundle = Bundle.load(int8_bundle)
    metrics = {**bundle.manifest.metrics}
    metrics["operating_point"] = {**metrics["operating_point"], "chance": 0.12}
    unlikely = Bundle.create(bundle.manifest.model_copy(update={"metrics": metrics}), bundle.model)
    path = unlikely.save(tmp_path / "unlikely.inspector")
    split = dict(split_file=trained_run / "split.json", split="test")
    own = evaluate_bundle(path, synth_root, **split)
    assert [n for n in own.verdict.notes if "estimated from the scores it was chosen on, is 12%" in n]
    other = evaluate_bundle(path, synth_root, policy=DecisionPolicy(threshold=0.5), **split)
    assert not [n for n in other.verdict.notes if "chance of meeting" in n]
