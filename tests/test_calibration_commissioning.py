"""Camera commissioning: the reference frame passes, a blurred and an over-exposed frame are flagged."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import yaml

from calibration.commissioning import (
    CommissioningError,
    check_frame,
    commission,
    commission_image,
    find_roi,
    parse_roi,
    station_yaml,
)
from inspector.imageio import load_image, save_image
from inspector.preprocess import Roi
from inspector.synth import render


@pytest.fixture(scope="module")
def station_frame():
    """A 240x320 BGR frame: dark conveyor, a textured good part at x=90..250, y=50..190, under light."""
    rng = np.random.default_rng(5)
    frame = np.full((240, 320, 3), 25, np.uint8)
    frame += rng.integers(0, 6, frame.shape, dtype=np.uint8)
    part = render(np.random.default_rng(1), "good", size=(160, 140), surface="tile")
    frame[50:190, 90:250] = np.clip(part.astype(np.int16) + 60, 0, 235).astype(np.uint8)[:, :, ::-1]
    return frame


def test_reference_passes_blur_and_overexposure_are_flagged(station_frame):
    ref = commission(station_frame, roi=Roi(x=90, y=50, width=160, height=140)).reference
    assert check_frame(ref, station_frame) == []
    blurred = cv2.GaussianBlur(station_frame, (0, 0), 3)
    problems = check_frame(ref, blurred)
    assert any(p.startswith("out_of_focus") for p in problems), problems
    bright = np.clip(station_frame.astype(np.int16) * 2 + 90, 0, 255).astype(np.uint8)
    problems = check_frame(ref, bright)
    assert any(p.startswith("over_exposed") for p in problems), problems
    assert any(p.startswith("clipped_bright") for p in problems), problems
    dark = (station_frame // 8).astype(np.uint8)
    assert any(p.startswith("under_exposed") for p in check_frame(ref, dark))


def test_auto_roi_finds_the_part(station_frame):
    roi = find_roi(station_frame, margin=0.0)
    assert abs(roi.x - 90) <= 3 and abs(roi.y - 50) <= 3
    assert abs(roi.width - 160) <= 6 and abs(roi.height - 140) <= 6
    grown = find_roi(station_frame, margin=0.05)
    assert grown.x < roi.x and grown.x + grown.width > roi.x + roi.width
    assert commission(station_frame, auto_roi=True).reference.roi == grown


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("part", ["demo", (128, 128)])
def test_auto_roi_on_the_demo_reference_frame(part, seed, tmp_path):
    """The demo's reference frame (a good part on the belt between two bright rails, as ``make demo``
    writes it; also with the 128 px part the report of the whole-frame ROI was made on) gives the part,
    not the belt: the belt touches both side edges and covers 94 % of the frame, and was once taken for
    the part (the whole frame came back)."""
    from app.demo.run import FRAME_SIZE, PART_SIZE
    from app.demo.video import frame_with_part, render_line_video

    size = PART_SIZE if part == "demo" else part
    video = render_line_video(tmp_path / "line.avi", ["good"], seed=seed, part_size=size, frame_size=FRAME_SIZE)
    good = render(np.random.default_rng([seed, 7]), "good", size)
    path = tmp_path / "reference.png"
    save_image(path, frame_with_part(good[:, :, ::-1], video.roi.x, FRAME_SIZE)[:, :, ::-1])
    frame = np.ascontiguousarray(load_image(path)[:, :, ::-1])
    roi = video.roi  # where the demo put the part: the truth
    truth = (roi.x, roi.y, roi.x + roi.width, roi.y + roi.height)
    if size == (128, 128):
        assert truth == (96, 56, 224, 184)
    tight = find_roi(frame, margin=0.0)  # within 2 px: the 5x5 blur before the threshold softens the edge
    edges = (tight.x, tight.y, tight.x + tight.width, tight.y + tight.height)
    assert np.abs(np.subtract(edges, truth)).max() <= 2, tight
    found = commission_image(path, auto_roi=True).reference.roi
    assert found is not None and (found.width, found.height) != FRAME_SIZE
    assert found.x <= truth[0] and found.y <= truth[1]
    assert found.x + found.width >= truth[2] and found.y + found.height >= truth[3]
    assert found.width <= 1.2 * roi.width and found.height <= 1.2 * roi.height


def test_auto_roi_fails_on_a_featureless_frame():
    with pytest.raises(CommissioningError, match="--roi"):
        find_roi(np.full((100, 100, 3), 128, np.uint8))


def test_roi_parsing_and_fit():
    assert parse_roi("1,2,30,40") == Roi(x=1, y=2, width=30, height=40)
    with pytest.raises(CommissioningError, match="x,y,width,height"):
        parse_roi("1,2,30")
    with pytest.raises(CommissioningError, match="width"):
        parse_roi("1,2,0,40")
    with pytest.raises(CommissioningError, match="does not fit"):
        commission(np.zeros((50, 50, 3), np.uint8), roi=Roi(x=10, y=10, width=50, height=10))


def test_soft_or_clipped_reference_is_warned_about(station_frame):
    soft = commission(cv2.GaussianBlur(station_frame, (0, 0), 6), roi=Roi(x=90, y=50, width=160, height=140))
    assert any("soft" in w for w in soft.warnings)
    blown = np.full_like(station_frame, 255)
    blown[::2] = 120
    assert any("at or above" in w for w in commission(blown).warnings)


def test_reference_from_file_measures_in_camera_order(station_frame, tmp_path):
    path = tmp_path / "ref.png"
    save_image(path, station_frame[:, :, ::-1])  # files hold RGB
    from_file = commission_image(path, roi=Roi(x=90, y=50, width=160, height=140)).reference
    direct = commission(station_frame, roi=Roi(x=90, y=50, width=160, height=140)).reference
    assert from_file.mean == pytest.approx(direct.mean) and from_file.focus == pytest.approx(direct.focus)


def test_station_yaml_is_a_valid_health_section(station_frame):
    ref = commission(station_frame, roi=Roi(x=90, y=50, width=160, height=140), mean_tolerance=30).reference
    data = yaml.safe_load(station_yaml(ref))
    from edge.config import HealthConfig

    health = HealthConfig.model_validate(data["health"])
    assert health.reference == ref and health.reference.mean_tolerance == 30


def test_camera_only_command(station_frame, tmp_path):
    path = tmp_path / "ref.png"
    save_image(path, station_frame[:, :, ::-1])
    out = tmp_path / "camera.yaml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "calibrate",
            "--camera-only",
            "--reference-image",
            str(path),
            "--auto-roi",
            "--station-yaml",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    ref = yaml.safe_load(out.read_text())["health"]["reference"]
    assert ref["roi"]["width"] > 100
    # read as a person reads it: the ROI and the thresholds the station flags at, no Python dict
    lines = [line for line in proc.stdout.splitlines() if not line.startswith("warning: ")]
    assert lines[0] == "camera reference (320x240 frame)"
    roi = ref["roi"]
    assert lines[1].split() == ["ROI", f"x={roi['x']}", f"y={roi['y']}", f"w={roi['width']}", f"h={roi['height']}"]
    focus_line = (
        f"focus {ref['focus']:.1f} (flagged below {ref['focus'] * ref['focus_min_ratio']:.1f}, 0.50 x reference)"
    )
    assert " ".join(lines[2].split()) == focus_line
    low, high = ref["mean"] - ref["mean_tolerance"], ref["mean"] + ref["mean_tolerance"]
    assert " ".join(lines[3].split()).startswith(
        f"exposure mean {ref['mean']:.1f} (flagged outside {low:.1f}-{high:.1f})"
    )
    assert lines[-1] == f"station config fragment: {out}"
    assert not any(c in proc.stdout for c in "{}'")


def test_describe_names_the_whole_frame_without_a_region(station_frame):
    text = commission(station_frame).describe()
    assert text.splitlines()[1].split() == ["ROI", "whole", "frame"]
