"""``inspector predict`` on a real INT8 bundle: a line per picture, the gate's reasons, where the defect is for
fail and review, skipped files and why, annotated pictures, CSV, JSON only with --json, videos, and run
folders."""

import csv
import json
import shutil

import cv2
import numpy as np
import pytest

from app.cli import main
from inspector.bundle import Bundle
from inspector.decision import DecisionPolicy
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


def _name(line):
    """The picture's name in a per-picture line (the gate's reasons and ``where`` follow it)."""
    return line.split("  gate:")[0].split("  where:")[0].split()[-1]


def _bundle_with_threshold(int8_bundle, threshold, folder):
    """The shared bundle deciding at ``threshold`` (the near-chance fixture model scores every part alike)."""
    bundle = Bundle.load(int8_bundle)
    manifest = bundle.manifest.model_copy(update={"decision": DecisionPolicy(threshold=threshold)})
    return Bundle.create(manifest, bundle.model).save(folder / f"t{threshold:g}.inspector")


def test_folder_lines_summary_save_and_csv(int8_bundle, folder, tmp_path, capsys):
    saved, table = tmp_path / "annotated", tmp_path / "out.csv"
    assert main(["predict", str(int8_bundle), str(folder), "--save", str(saved), "--csv", str(table)]) == 0
    out = capsys.readouterr().out
    pictures = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    lines = {
        _name(line): line for line in out.splitlines() if line.split() and line.split()[0] in ("pass", "fail", "review")
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


def test_fail_and_review_say_where_in_lines_json_csv_and_pictures(int8_bundle, folder, tmp_path, capsys):
    bundle = _bundle_with_threshold(int8_bundle, 0.0, tmp_path)  # every picture fails
    saved, table, blended = tmp_path / "annotated", tmp_path / "out.csv", tmp_path / "overlay"
    assert main(["predict", str(bundle), str(folder), "--json", "--save", str(saved), "--csv", str(table)]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["file"]: r for r in csv.DictReader(table.open())}
    clf = Classifier(Bundle.load(bundle))
    assert len(doc["results"]) == 11
    for result in doc["results"]:  # the station's where: its Classifier, the frame's pixels
        image = load_image(folder / result["file"])
        decision = decide_frame(clf, bundle_gate(clf.bundle.manifest), clf.preprocessor.prepare(image, "rgb"), image)
        where = clf.locate(decision.classification, image.shape).where()
        assert result["verdict"] == "fail" and result["where"] == where.model_dump(mode="json")
        row = rows[result["file"]]
        assert (row["where_label"], row["where_x"], row["where_y"]) == (where.label, str(where.x), str(where.y))
        assert row["where_box"] == " ".join(map(str, where.box)) and float(row["where_strength"]) == where.strength
        x, y, w, h = where.box
        assert (load_image(saved / result["file"])[y + h - 1, x + w - 1] == 255).all()  # the box's corner, in white
    assert {r["where_label"] for r in rows.values() if r["skipped"]} == {""}

    assert main(["predict", str(bundle), str(folder), "--save", str(blended), "--overlay"]) == 0
    lines = {_name(line): line for line in capsys.readouterr().out.splitlines() if line.startswith("fail")}
    assert len(lines) == 11
    for result in doc["results"]:
        x, y, w, h = result["where"]["box"]
        assert lines[result["file"]].endswith(f"  where: {result['where']['label']} {x},{y} {w}x{h}")
    assert any(  # the heatmap is blended in where the evidence is above the map's median
        not np.array_equal(load_image(blended / r["file"]), load_image(saved / r["file"])) for r in doc["results"]
    )
    assert main(["predict", str(bundle), str(folder), "--overlay"]) == 1
    assert "--overlay draws on the pictures --save writes" in capsys.readouterr().err


def test_passes_have_no_where(int8_bundle, folder, tmp_path, capsys):
    bundle = _bundle_with_threshold(int8_bundle, 1.0, tmp_path)  # nothing fails but what the gate stops
    assert main(["predict", str(bundle), str(folder), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert {r["verdict"] for r in results if not r["gate"]} == {"pass"}
    assert all(r["where"] is None for r in results if r["verdict"] == "pass")
    assert all(r["where"] is not None for r in results if r["verdict"] != "pass")  # the gated blank picture
    assert any(r["verdict"] != "pass" for r in results)


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
