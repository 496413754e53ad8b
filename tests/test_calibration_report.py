"""Calibration and evaluation reports: a PNG with the three plots and an HTML page with the tables."""

import numpy as np

from calibration.evaluate import EvaluationResult, score
from calibration.report import write_evaluation_report
from inspector.decision import DecisionPolicy


def _png_size(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_calibration_report(calibrated):
    page = calibrated.report_html.read_text()
    for section in (
        "Bundle written",
        "Accuracy guard (validation split)",
        "Operating point",
        "Metrics at the operating point",
        "Per class (validation)",
        "Per class (test)",
        "Representative sample",
        '<img src="report.png"',
    ):
        assert section in page, section
    for label in calibrated.run.labels:
        assert f"<td>{label}</td>" in page
    width, height = _png_size(calibrated.report_png.read_bytes())
    assert width > 2.5 * height  # three panels side by side
    assert calibrated.report_png.parent == calibrated.report_html.parent


def test_evaluation_report(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    probs = rng.dirichlet(np.ones(3), 60)
    policy = DecisionPolicy(threshold=0.6, review_low=0.5, review_high=0.7)
    metrics = score(probs, labels, ["good", "dent", "scratch"], "good", policy)
    result = EvaluationResult("b.inspector", "data", None, metrics, probs, labels, [f"{i}.png" for i in range(60)])
    page, png = write_evaluation_report(result, 0, policy, tmp_path / "r", "Eval")
    text = page.read_text()
    assert "<title>Eval</title>" in text and "<td>scratch</td>" in text and "review" in text
    width, height = _png_size(png.read_bytes())
    assert width > 1.5 * height
