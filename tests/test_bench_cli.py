"""Smoke tests of the benchmark command: it parses without TensorFlow, and the outbox benchmark writes
valid JSON against a real Mosquitto at a tiny size. No timing is asserted (benchmarks are not tests)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from inspector.localbroker import find_mosquitto

ROOT = Path(__file__).resolve().parents[1]


def test_bench_help_lists_the_benchmarks_and_imports_no_tensorflow():
    code = textwrap.dedent("""
        import sys
        from app.cli import main
        try:
            main(["bench", "--help"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        print("TF_LOADED" if any(n == "tensorflow" or n.startswith("tensorflow.") for n in sys.modules) else "TF_FREE")
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "TF_FREE" in proc.stdout
    for name in ("interpreter", "pipeline", "outbox", "coldstart", "training", "all", "--quick"):
        assert name in proc.stdout


def test_unknown_benchmark_is_a_usage_error():
    from app.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "nonsense"])
    assert exc.value.code == 2


@pytest.mark.skipif(find_mosquitto() is None, reason="the benchmark broker is Mosquitto")
def test_outbox_benchmark_delivers_every_result_and_writes_json(tmp_path):
    from bench import outbox_mqtt

    path = outbox_mqtt.run(True, tmp_path, n=40, outage_n=150)
    doc = json.loads(path.read_text())
    assert doc["benchmark"] == "outbox"
    assert len(doc["context"]["load_average_at_start"]) == 3
    modes = {t["synchronous"]: t for t in doc["results"]["throughput"]}
    assert set(modes) == {"full", "normal"}
    for t in modes.values():
        assert t["sent"] == 40 and t["received_unique"] == 40 and t["nothing_lost"]
        assert t["acked_per_s"] > 0
    outage = doc["results"]["outage"]
    assert outage["queued"] == 150 and outage["received_unique"] == 150 and outage["missing"] == 0
    assert outage["drain_per_s"] > 0


def test_readme_tables_render_from_result_files(tmp_path, monkeypatch):
    from bench import report

    full = tmp_path / "full"
    full.mkdir()
    (full / "outbox.json").write_text(
        json.dumps(
            {
                "benchmark": "outbox",
                "context": {
                    "started": "2025-01-01T00:00:00+00:00",
                    "git_commit": "abc",
                    "load_average_at_start": [1.0, 1, 1],
                    "load_average_at_end": [2.0, 1, 1],
                    "cpus": 2,
                    "wall_s": 3.0,
                },
                "results": {
                    "throughput": [
                        {
                            "synchronous": "full",
                            "results": 10,
                            "add_per_s": 100.0,
                            "acked_per_s": 90.0,
                            "received_unique": 10,
                            "sent": 10,
                            "duplicates": 0,
                        }
                    ],
                    "outage": {
                        "queued": 5,
                        "reconnect_s": 0.1,
                        "drain_per_s": 50.0,
                        "restart_to_outbox_empty_s": 0.2,
                        "received_unique": 5,
                        "sent": 5,
                        "duplicates": 0,
                    },
                },
            }
        )
    )
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Bench\nhand-written\n{report.BEGIN}\nOLD-TABLE\n{report.END}\ntail\n")
    report.update_readme(readme)
    text = readme.read_text()
    assert "hand-written" in text and text.endswith("tail\n") and "OLD-TABLE" not in text
    assert "| full | 10 | 100 | 90 |  | 10/10 | 0 |" in text  # no power-cut window in this file: an empty cell
    assert "_pipeline: no result file_" in text


def test_installed_app_without_a_checkout_says_where_the_benchmarks_are(tmp_path):
    import shutil

    shutil.copytree(ROOT / "app", tmp_path / "app")  # an app with no bench/ next to it, as a wheel installs it
    code = "import sys; from app.cli import main; sys.exit(main(['bench', 'all']))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert proc.returncode == 2, proc.stderr
    assert "python -m bench" in proc.stderr and "not installed" in proc.stderr
