"""The reports as a person sees them: each page opened in a real headless Chromium, screenshotted, and failed
when an image is missing or broken, when the deployability verdict is not at the top, or when the escapes
and the file names of the images to look at are missing.

Pages: the training report of the session's ``trained_run``, the calibration report of ``calibrated``, an
``inspector evaluate`` report of ``int8_bundle`` on the synthetic data, and a demo page over real line
frames (app/demo/video.py) with a hand-made gate record (no training, no station run). Screenshots are
saved under the test's tmp path (the path is printed; run with -s to see it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import numpy as np
import pytest

from tests.test_review_browser import _browser

# Every <img> loaded with pixels, and the page's verdict block right under its title.
CHECK_JS = """
const images = Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]);
const first = document.querySelector('h1') && document.querySelector('h1').nextElementSibling;
const verdict = first && first.classList.contains('verdict') ? first.innerText : null;
const top = first ? first.getBoundingClientRect().top : null;
const names = Array.from(document.querySelectorAll('figure.tile code.name')).map(c => c.innerText);
const headings = Array.from(document.querySelectorAll('h2, p')).map(e => e.innerText);
return {images, verdict, top, names, headings, height: document.documentElement.scrollHeight,
        text: document.body.innerText};
"""


def page_problems(driver, page: Path, screenshot: Path) -> tuple:
    """Open ``page``, save a full-page screenshot, and return (problems, what the page showed)."""
    driver.set_window_size(1400, 1000)
    driver.get(page.resolve().as_uri())
    seen = driver.execute_script(CHECK_JS)
    driver.set_window_size(1400, min(max(seen["height"] + 100, 1000), 12000))
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(screenshot))
    print(f"screenshot {screenshot}")
    problems: List[str] = []
    if not seen["images"]:
        problems.append("no image on the page")
    problems += [f"image {alt!r} did not load" for alt, done, width in seen["images"] if not (done and width > 0)]
    if not seen["verdict"] or "DEPLOYABLE" not in seen["verdict"]:
        problems.append("no deployability verdict under the title")
    elif seen["top"] > 400:
        problems.append(f"the verdict is {seen['top']:.0f} px down the page, not at the top")
    if not any(h.startswith("Escapes") for h in seen["headings"]):
        problems.append("no escapes on the page")
    if "{'" in seen["text"]:
        problems.append("a printed Python dict")
    return problems, seen


def _ok(driver, page: Path, shots: Path) -> dict:
    problems, seen = page_problems(driver, page, shots / f"{page.parent.name}-{page.stem}.png")
    assert not problems, f"{page}: {problems}"
    return seen


@pytest.fixture(scope="module")
def driver():
    browser = _browser()
    yield browser
    browser.quit()


@pytest.fixture
def demo_page(tmp_path, calibrated) -> Path:
    """A demo page over real line frames: 4 parts, one of each outcome, the gate record made by hand, and the
    session's bundle commissioned with the line's region of interest (for the crops and heatmaps)."""
    from app.demo.line import LineRecord
    from app.demo.report import summarize, write_report
    from app.demo.video import frame_with_part, render_line_video
    from inspector.bundle import Bundle
    from inspector.imageio import save_image
    from inspector.synth import render

    out = tmp_path / "demo"
    out.mkdir()
    parts = [("good", "accept", 0.1), ("crack", "accept", 0.2), ("good", "reject", 0.8), ("spot", "reject", 0.9)]
    video = render_line_video(out / "line.avi", [p[0] for p in parts], seed=2)
    record = LineRecord(stats={"frames_captured": 40, "uptime_s": 4.0}, station_exit=0)
    rng = np.random.default_rng(3)
    for slot, (label, action, score) in zip(video.slots, parts):
        frame = out / "line" / "archive" / f"{slot.part_id}.png"
        bgr = frame_with_part(render(rng, label, (128, 128))[:, :, ::-1], video.roi.x, video.frame_size)
        save_image(frame, bgr[:, :, ::-1])  # as the station archives it: the whole frame, RGB on disk
        record.results[slot.part_id] = {
            "part_id": slot.part_id,
            "defect_score": score,
            "threshold": 0.5,
            "top_class": "good" if score < 0.5 else label,
            "inference_ms": 2.0,
            "image": str(frame),
        }
        reason = "pass" if action == "accept" else "fail"
        record.decisions.append({"part_id": slot.part_id, "action": action, "reason": reason, "wait_ms": 90.0})
    summary = summarize(record, video, "good", ["dent"], {"data_s": 1.3, "line_s": 4.0})
    summary["deployability"] = calibrated.verdict.to_dict()
    bundle = calibrated.bundle
    preprocess = bundle.manifest.preprocess.model_copy(update={"roi": video.roi})
    with_roi = Bundle(bundle.manifest.model_copy(update={"preprocess": preprocess}), bundle.model)
    summary["bundle"] = str(with_roi.save(out / "line.inspector"))
    write_report(out, summary, record, video)
    return out / "report.html"


def test_training_report_in_a_browser(driver, trained_run, tmp_path):
    seen = _ok(driver, trained_run / "report.html", tmp_path / "screenshots")
    root = Path(json.loads((trained_run / "run.json").read_text())["dataset_root"])
    assert seen["names"] and all((root / name).is_file() for name in seen["names"]), seen["names"]


def test_calibration_report_in_a_browser(driver, calibrated, tmp_path):
    seen = _ok(driver, calibrated.report_html, tmp_path / "screenshots")
    assert all(name in calibrated.test.paths for name in seen["names"]), seen["names"]


def test_evaluation_report_in_a_browser(driver, int8_bundle, synth_root, tmp_path):
    from calibration.evaluate import evaluate_bundle
    from calibration.report import write_evaluation_report
    from inspector.bundle import Bundle

    manifest = Bundle.load(int8_bundle).manifest
    evaluation = evaluate_bundle(int8_bundle, synth_root)
    page, _ = write_evaluation_report(
        evaluation, manifest.good_index, manifest.decision, tmp_path / "evaluate", "Evaluation", evaluation.verdict
    )
    seen = _ok(driver, page, tmp_path / "screenshots")
    assert all((synth_root / name).is_file() for name in seen["names"]), seen["names"]


def test_demo_report_in_a_browser(driver, demo_page, tmp_path):
    seen = _ok(driver, demo_page, tmp_path / "screenshots")
    headings = [h for h in seen["headings"] if h.startswith(("Escapes", "False rejects", "Caught"))]
    assert headings == [
        "Escapes: 1 defective parts accepted",
        "False rejects: 1 good parts rejected",
        "Caught: 1 defective parts rejected",
    ]
    assert seen["names"] == ["P000002", "P000003", "P000004"]  # escape first
    alts = [alt for alt, *_ in seen["images"]]
    assert [a for a in alts if a.endswith("heatmap")] == [f"{n} heatmap" for n in seen["names"]]


def test_the_check_fails_on_a_broken_image_and_a_missing_verdict(driver, demo_page, tmp_path):
    """The checks above can fail: a page whose first image is broken, and one without its verdict block."""
    broken = demo_page.parent / "broken.html"
    html = demo_page.read_text()
    at = html.index('src="data:image/png;base64,') + len('src="data:image/png;base64,')
    broken.write_text(html[:at] + "AAAA" + html[at + 4 :])
    problems, _ = page_problems(driver, broken, tmp_path / "screenshots" / "broken.png")
    assert problems == ["image 'P000002' did not load"]
    missing = demo_page.parent / "no_verdict.html"
    start = html.index('<div class="verdict')
    missing.write_text(html[:start] + html[html.index("</div>", start) + 6 :])
    problems, _ = page_problems(driver, missing, tmp_path / "screenshots" / "no_verdict.png")
    assert problems == ["no deployability verdict under the title"]
