"""The demo's page and terminal summary, from a hand-made line record (no training, no broker)."""

import base64
import re
from pathlib import Path

import cv2
import numpy as np

from app.demo.line import LineRecord
from app.demo.report import format_summary, summarize, write_report
from app.demo.video import LineVideo, PartSlot
from inspector.camera import Roi
from inspector.imageio import save_image

TRUTH = [
    ("P1", "good", "accept", "pass", 0.1),
    ("P2", "crack", "reject", "fail", 0.9),
    ("P3", "good", "reject", "review", 0.55),
    ("P4", "dent", "accept", "pass", 0.3),
]


def _line(tmp_path: Path):
    video = LineVideo(
        "line.avi",
        10.0,
        (320, 240),
        Roi(x=0, y=0, width=64, height=64),
        [PartSlot(p, label, i, i + 0.5, i + 1) for i, (p, label, *_) in enumerate(TRUTH)],
    )
    record = LineRecord(
        stats={"frames_captured": 40, "uptime_s": 4.0},
        station_exit=0,
        events=[{"type": "started"}, {"type": "stopped"}],
    )
    for i, (part, _, action, reason, score) in enumerate(TRUTH):
        image = tmp_path / "line" / "archive" / f"{part}.png"
        frame = np.zeros((240, 320, 3), np.uint8)  # a whole camera frame; the part sits in the ROI
        frame[:64, :64] = 40 * (i + 1)
        save_image(image, frame)
        record.results[part] = {
            "part_id": part,
            "defect_score": score,
            "threshold": 0.5,
            "top_class": "good",
            "inference_ms": 1.0 + i,
            "image": str(image),
        }
        record.decisions.append({"part_id": part, "action": action, "reason": reason, "wait_ms": 100.0 + i})
    summary = summarize(record, video, "good", ["dent"], {"data_s": 1.5, "line_s": 20.0})
    summary["deployability"] = {
        "status": "NOT DEPLOYABLE",
        "basis": "test split",
        "reasons": [{"problem": "chance_auc", "message": "AUC near chance"}],
        "notes": [],
    }
    summary["training"] = {"test_accuracy": 0.5, "test_pass_fail": {"roc_auc": 0.6, "escapes": 1}}
    summary["reports"] = {"training": "run/report.html"}
    return summary, record, video


def _tile_images(section: str) -> list:
    """The images embedded in one section of the page, decoded."""
    data = re.findall(r'src="data:image/png;base64,([^"]+)"', section)
    return [cv2.imdecode(np.frombuffer(base64.b64decode(d), np.uint8), cv2.IMREAD_UNCHANGED) for d in data]


def test_demo_page_shows_escapes_first_as_roi_crops(tmp_path):
    summary, record, video = _line(tmp_path)
    page = write_report(tmp_path, summary, record, video).read_text()
    body = page[page.index("<body>") :]
    headings = [
        "NOT DEPLOYABLE",
        "<h2>Summary</h2>",
        "<h2>Escapes: 1 defective parts accepted</h2>",
        "<h2>False rejects: 1 good parts rejected</h2>",
        "<h2>Caught: 1 defective parts rejected</h2>",
        "<h2>Every part</h2>",
        "<h2>All summary fields</h2>",
    ]
    at = [body.index(h) for h in headings]
    assert at == sorted(at)
    sections = {name: body[a:b] for name, a, b in zip(("escape", "false reject", "caught"), at[2:5], at[3:6])}
    for name, (part, level) in {"escape": ("P4", 160), "false reject": ("P3", 120), "caught": ("P2", 80)}.items():
        (crop,) = _tile_images(sections[name])
        assert crop.shape[:2] == (64, 64) and (crop == level).all(), name  # the ROI, not the 320x240 frame
        assert f"<code class='name'>{part}</code>" in sections[name] and f"line/archive/{part}.png" in sections[name]
    assert "dent → accept (pass)" in sections["escape"]
    assert "<td>escapes</td><td>1 (defective parts accepted)</td>" in body
    assert "<td>time</td><td>data 1.5 s, line 20 s</td>" in body
    assert "<td>training.test_pass_fail.roc_auc</td><td>0.6</td>" in body
    assert body.count("<tr class='bad'>") == 2  # P3 false reject, P4 escape
    assert "<a href='run/report.html'>training report</a>" in body and 'src="scores.png"' in body
    assert "{" not in re.sub(r"<style>.*?</style>", "", body, flags=re.S)  # no printed dict anywhere
    assert (tmp_path / "scores.png").read_bytes()[:4] == b"\x89PNG"


def test_a_part_without_an_archived_frame_is_named(tmp_path):
    summary, record, video = _line(tmp_path)
    Path(record.results["P4"]["image"]).unlink()
    body = write_report(tmp_path, summary, record, video).read_text()
    escapes = body[body.index("<h2>Escapes") : body.index("<h2>False rejects")]
    assert "No archived frame for P4 (pass)." in escapes and not _tile_images(escapes)


def test_terminal_summary_uses_the_same_rows(tmp_path):
    summary, *_ = _line(tmp_path)
    text = format_summary(summary)
    assert "escapes            1 (defective parts accepted)" in text
    assert "time               data 1.5 s, line 20 s" in text
    assert "model              NOT DEPLOYABLE (test split)\n  - AUC near chance" in text


def test_a_decision_on_a_neighbours_frame_is_named(tmp_path):
    """The station's result names its frame; a frame from another part's slot (a replay that fell behind)
    is listed and shown, so a lagging machine is not mistaken for a model's escape."""
    _, record, video = _line(tmp_path)
    for i, part in enumerate(record.results):
        record.results[part]["frame"] = f"line.avi#{10 * i + 5}"  # 10 fps, slot i spans [i, i + 1) s
    record.results["P4"]["frame"] = "line.avi#25"  # P3's slot
    summary = summarize(record, video, "good", ["dent"], {"line_s": 20.0})
    assert summary["wrong_frame"] == ["P4"]
    assert "1 part(s) judged on a neighbour's frame (P4)" in format_summary(summary)
    record.results["P4"]["frame"] = "line.avi#35"
    assert summarize(record, video, "good", ["dent"], {"line_s": 20.0})["wrong_frame"] == []
