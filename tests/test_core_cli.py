"""The inspector command: synth and dataset end to end, and errors as messages not tracebacks."""
import json
import subprocess
import sys

from app.cli import main


def test_synth_then_dataset(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["synth", str(data), "--per-class", "6", "--size", "32x24", "--seed", "2"]) == 0
    (data / "good" / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    out = tmp_path / "split.json"
    assert main(["dataset", str(data), "--out", str(out), "--ratios", "0.5,0.25,0.25"]) == 0
    text = capsys.readouterr().out
    assert "good*" in text and "skipped 1 file(s)" in text and "good/broken.jpg" in text
    manifest = json.loads(out.read_text())
    assert sum(len(v) for v in manifest["splits"].values()) == 30


def test_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["dataset", str(tmp_path), "--good-class", "ok"]) == 1
    err = capsys.readouterr().err
    assert "inspector dataset: error:" in err and "Traceback" not in err


def test_help_runs_as_a_program():
    done = subprocess.run([sys.executable, "-m", "app.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "dataset" in done.stdout and "synth" in done.stdout


def test_bundle_inspect_and_verify_a_real_bundle(int8_bundle, capsys):
    assert main(["bundle", "inspect", str(int8_bundle)]) == 0
    assert "int8" in capsys.readouterr().out
    assert main(["bundle", "verify", str(int8_bundle)]) == 0
    out = capsys.readouterr().out
    assert "verified: checksum ok" in out and '"ok": true' in out


def test_bundle_verify_rejects_a_tampered_copy(int8_bundle, tmp_path, capsys):
    import zipfile

    bad = tmp_path / "bad.inspector"
    with zipfile.ZipFile(int8_bundle) as src, zipfile.ZipFile(bad, "w") as dst:
        dst.writestr("manifest.json", src.read("manifest.json"))
        model = bytearray(src.read("model.tflite"))
        model[len(model) // 2] ^= 0xFF
        dst.writestr("model.tflite", bytes(model))
    assert main(["bundle", "verify", str(bad)]) == 1
    assert "checksum mismatch" in capsys.readouterr().err
