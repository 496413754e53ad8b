"""`inspector calibrate`: help without TensorFlow, a float16 bundle with camera commissioning, guard exit code."""

import subprocess
import sys

import numpy as np
import pytest
import yaml

from app.cli import main
from inspector.bundle import Bundle, Precision


def test_help_is_cheap():
    code = (
        "import sys\nfrom app.cli import main\n"
        "for cmd in ('calibrate', 'evaluate'):\n"
        "    try:\n        main([cmd, '--help'])\n    except SystemExit as e:\n        assert e.code == 0\n"
        "assert not [m for m in sys.modules if m.startswith(('tensorflow', 'keras', 'matplotlib'))]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "inspector calibrate runs/tiles --out tiles.inspector" in proc.stdout
    assert "--accuracy-budget" in proc.stdout and "--remedy" in proc.stdout and "--split-file" in proc.stdout


@pytest.fixture
def station_image(tmp_path):
    from inspector.imageio import save_image
    from inspector.synth import render

    frame = np.full((120, 160, 3), 20, np.uint8)
    frame[20:100, 40:120] = np.clip(render(np.random.default_rng(0), "good", (80, 80)).astype(int) + 50, 0, 240)
    path = tmp_path / "reference.png"
    save_image(path, frame)
    return path


def test_float16_bundle_with_camera_reference(trained_run, tmp_path, station_image, capsys):
    out, camera_yaml = tmp_path / "f16.inspector", tmp_path / "camera.yaml"
    out.write_bytes(b"an earlier bundle")  # replaced because of --overwrite
    rc = main(
        [
            "calibrate",
            str(trained_run),
            "--out",
            str(out),
            "--precision",
            "float16",
            "--accuracy-budget",
            "100",
            "--target-rate",
            "1%",
            "--review-margin",
            "0.05",
            "--no-test",
            "--reference-image",
            str(station_image),
            "--auto-roi",
            "--station-yaml",
            str(camera_yaml),
            "--name",
            "tiles",
            "--bundle-version",
            "7",
            "--force",
            "--overwrite",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    m = Bundle.load(out).manifest
    assert (m.name, m.version, m.precision) == ("tiles", "7", Precision.FLOAT16)
    assert m.input.dtype == "float32" and m.metrics["operating_point"]["target_rate"] == 0.01
    assert m.decision.review_low == pytest.approx(m.decision.threshold - 0.05)
    assert m.camera is not None and m.camera.roi.x <= 40 and m.camera.roi.width >= 80
    assert m.preprocess.roi is None  # --crop-model-input not given
    assert yaml.safe_load(camera_yaml.read_text())["health"]["reference"] == m.camera.model_dump(mode="json")
    # float16 weights with float compute: the TFLite model scores as Keras does (to float16 rounding; top-1
    # agreement is not asserted because the near-chance fixture model has near-tied classes).
    assert m.metrics["parity"][0]["max_abs_score_diff"] < 0.01
    assert m.metrics["deployability"]["status"] == "NOT DEPLOYABLE"  # the near-chance fixture, written by --force
    for text in (
        "guard: float16",
        "-> pass",
        "validation (float16",
        "bundle:",
        "report:",
        "station config fragment",
        "NOT DEPLOYABLE",
        "written anyway (--force)",
    ):
        assert text in printed, text
    assert (tmp_path / "f16_report" / "report.html").is_file()


def test_guard_failure_exits_3_without_bundle(trained_run, tmp_path, capsys):
    """No bundle is written, so with --overwrite the bundle already at --out stays as it was (docs/calibration.md)."""
    out = tmp_path / "never.inspector"
    out.write_bytes(b"the bundle on the line")
    rc = main(
        [
            "calibrate",
            str(trained_run),
            "--out",
            str(out),
            "--precision",
            "float32",
            "--accuracy-budget",
            "-100",
            "--guard-on",
            "classes",
            "--no-test",
            "--overwrite",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 3
    assert "accuracy guard failed" in err and "what to try" in err and "--precision float16" in err
    assert "percentage points of validation class accuracy" in err and ": class accuracy " in err
    assert out.read_bytes() == b"the bundle on the line" and (tmp_path / "never_report" / "report.html").is_file()


def test_bad_arguments(tmp_path, capsys):
    assert main(["calibrate", "--out", str(tmp_path / "x.inspector")]) == 2
    assert main(["calibrate", "--camera-only"]) == 2
    assert main(["calibrate", str(tmp_path), "--out", "x.inspector", "--roi", "1,2,3,4"]) == 1
    assert "need --reference-image" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["calibrate", str(tmp_path), "--out", "x.inspector", "--target-rate", "lots"])


def test_an_existing_bundle_is_not_replaced_without_overwrite(tmp_path, capsys):
    """Like `inspector train` with a used --out: earlier work is never replaced unless asked (before any work)."""
    out = tmp_path / "r1.inspector"
    out.write_bytes(b"the bundle on the line")
    assert main(["calibrate", str(tmp_path / "no-run"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"the bundle on the line"
    assert main(["calibrate", str(tmp_path / "no-run"), "--out", str(out), "--overwrite"]) != 0  # got past the check
    assert "already exists" not in capsys.readouterr().err


@pytest.mark.parametrize("given, rate", [("0.02", 0.02), ("2%", 0.02), ("0.5%", 0.005), ("0", 0.0), ("1", 1.0)])
def test_rates_are_fractions_or_percentages_with_a_sign(given, rate):
    from app.cli import build_parser

    args = build_parser().parse_args(["calibrate", "r", "--out", "o", "--max-escape-rate", given])
    assert args.max_escape_rate == pytest.approx(rate)


def test_a_bare_rate_above_one_is_refused_as_ambiguous(capsys):
    with pytest.raises(SystemExit):
        main(["calibrate", "r", "--out", "o", "--max-escape-rate", "2"])
    assert "fractions (0.02), or percentages with % (2%)" in capsys.readouterr().err
