"""``inspector predict`` on a real INT8 bundle: a line per picture, the gate's reasons, skipped files and why,
annotated pictures, CSV, JSON only with --json, videos, and run folders."""

import csv
import json
import shutil

import cv2
import numpy as np
import pytest

from app.cli import main
from inspector.bundle import Bundle
from inspector.imageio import load_image, save_image
from inspector.inference import Classifier
from inspector.inspection import bundle_gate, decide_frame


@pytest.fixture()
def folder(synth_root, tmp_path):
    """Two real images per class, a blank picture, a corrupt JPEG and a text file."""
    root = tmp_path / "pictures"
    for cls in sorted(p for p in synth_root.iterdir() if p.is_dir()):
        for image in sorted(cls.iterdir())[:2]:
            (root / cls.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, root / cls.name / image.name)
    save_image(root / "blank.png", np.full((64, 64, 3), 128, np.uint8))
    (root / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    (root / "notes.txt").write_text("not a picture")
    return root


def _expected(bundle_path, path):
    clf = Classifier(Bundle.load(bundle_path))
    image = load_image(path)
    return decide_frame(clf, bundle_gate(clf.bundle.manifest), clf.preprocessor.prepare(image, "rgb"), image)


def test_folder_lines_summary_save_and_csv(int8_bundle, folder, tmp_path, capsys):
    saved, table = tmp_path / "annotated", tmp_path / "out.csv"
    assert main(["predict", str(int8_bundle), str(folder), "--save", str(saved), "--csv", str(table)]) == 0
    out = capsys.readouterr().out
    pictures = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    lines = {
        line.split()[-1] if "gate:" not in line else line.split("  gate:")[0].split()[-1]: line
        for line in out.splitlines()
        if line.split() and line.split()[0] in ("pass", "fail", "review")
    }
    assert sorted(lines) == pictures
    for name in pictures:  # the verdict and score are the station's decision on that picture
        d = _expected(int8_bundle, folder / name)
        assert lines[name].split()[:3] == [
            d.verdict.value,
            f"{d.classification.defect_score:.3f}",
            d.classification.top_class,
        ]
    assert "gate: blank: contrast" in lines["blank.png"] and lines["blank.png"].split()[0] == "fail"
    assert f"{len(pictures)} picture(s):" in out and "2 skipped" in out
    assert "broken.jpg" in out and "notes.txt: not an image file" in out
    for name in pictures:
        written = load_image(saved / name)
        assert written.shape == load_image(folder / name).shape
        assert not np.array_equal(written, load_image(folder / name))  # the verdict is drawn on it
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == len(pictures) + 2
    assert {r["file"] for r in rows if r["skipped"]} == {"broken.jpg", "notes.txt"}


def test_json_prints_only_json(int8_bundle, folder, capsys):
    assert main(["predict", str(int8_bundle), str(folder), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["pictures"] == len(doc["results"]) == 11
    assert doc["summary"]["skipped"] == 2 and doc["summary"]["gated"] >= 1
    assert sum(doc["summary"][v] for v in ("pass", "fail", "review")) == 11


def test_video_frames_and_frame_limit(int8_bundle, synth_root, tmp_path, capsys):
    video = tmp_path / "replay.avi"
    images = [cv2.imread(str(p)) for p in sorted((synth_root / "good").iterdir())[:4]]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 64))
    for image in images:
        writer.write(image)
    writer.release()
    assert main(["predict", str(int8_bundle), str(video), "--frames", "3", "--save", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert all(f"replay.avi#{i}" in out for i in range(3)) and "replay.avi#3" not in out
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [f"replay_avi_{i}.png" for i in range(3)]


def test_run_folder_uses_its_bundle_or_says_what_to_run(int8_bundle, trained_run, folder, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(trained_run / "run.json", run / "run.json")
    assert main(["predict", str(run), str(folder)]) == 1
    assert f"inspector calibrate {run}" in capsys.readouterr().err
    shutil.copy(int8_bundle, run / "model.inspector")
    assert main(["predict", str(run), str(folder / "blank.png")]) == 0
    assert "1 picture(s)" in capsys.readouterr().out


def test_nothing_readable_exits_non_zero(int8_bundle, tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    assert main(["predict", str(int8_bundle), str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "0 picture(s)" in captured.out and "nothing could be read" in captured.err
