"""Calibration and evaluation reports: a PNG with the three plots and an HTML page with the tables."""

import re
import shutil

import numpy as np

from calibration.report import write_evaluation_report
from inspector.imageio import save_image
from inspector.synth import render


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


def _tiles(page: str, heading: str) -> list:
    """(name, width, height) of each image tile in the section under ``heading``."""
    section = page[page.index(heading) :]
    section = section[: section.index("</section>")]
    return re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)" width="(\d+)" height="(\d+)">', section)


def test_calibration_report_shows_escaped_and_falsely_rejected_test_images(calibrated):
    page = calibrated.report_html.read_text()
    kind = calibrated.chosen.conversion.kind
    tiles = _tiles(page, f"<h2>Escapes and false rejects (test split, {kind} model)</h2>")
    test = calibrated.metrics(calibrated.chosen.operating_point.policy())["test"]["decision"]
    wrong = min(24, test["escape"]["count"]) + min(24, test["false_reject"]["count"])
    names = [name for name, *_ in tiles if not name.endswith(" heatmap")]
    assert len(names) == wrong and len(tiles) == 2 * wrong  # each crop with its heatmap (the bundle has the map)
    assert set(names) <= set(calibrated.test.paths)  # file names relative to the data folder
    assert all(f"<code class='name'>{name}</code>" in page for name in names)


def test_evaluation_report_shows_the_images_behind_its_numbers(int8_bundle, synth_root, tmp_path):
    from calibration.evaluate import evaluate_bundle
    from inspector.bundle import Bundle

    manifest = Bundle.load(int8_bundle).manifest
    data = tmp_path / "data"
    shutil.copytree(synth_root, data)
    rng = np.random.default_rng(0)
    for i in range(3):  # a defect kind the bundle never saw
        save_image(data / "dent" / f"dent_{i}.png", render(rng, "dent", (64, 64)))
    evaluation = evaluate_bundle(int8_bundle, data)
    page, png = write_evaluation_report(
        evaluation, manifest.good_index, manifest.decision, tmp_path / "r", "Eval", evaluation.verdict
    )
    text = page.read_text()
    assert "<title>Eval</title>" in text and "review" in text
    for label in manifest.labels:
        assert f"<td>{label}</td>" in text
    width, height = _png_size(png.read_bytes())
    assert width > 1.5 * height
    tiles = _tiles(text, "<h2>Escapes and false rejects</h2>")
    decision = evaluation.metrics["decision"]
    assert len(tiles) == 2 * (min(24, decision["escape"]["count"]) + min(24, decision["false_reject"]["count"]))
    names = [name for name, *_ in tiles if not name.endswith(" heatmap")]
    assert [f"{n} heatmap" for n in names] == [n for n, *_ in tiles if n.endswith(" heatmap")]
    assert all((int(w), int(h)) == (128, 128) for _, w, h in tiles)  # 64x64 images (no ROI), shown at 128
    assert all((data / name).is_file() for name in names)
    dent = evaluation.metrics["unseen_defects"]["dent"]
    assert "<th>unseen defect kind</th>" in text
    assert f"<td>dent</td><td>3</td><td>{dent['passed']}</td><td>{dent['review']}</td><td>{dent['failed']}</td>" in text
