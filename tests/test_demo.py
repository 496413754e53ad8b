"""`inspector demo --quick` end to end: its summary must agree with the ground truth it generated."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _processes_mentioning(text: str):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and int(pid) != os.getpid():
            found.append(cmdline)
    return found


def test_demo_quick_counts_match_ground_truth(tmp_path):
    out = tmp_path / "demo"
    # A relative --out, as `make demo` uses: the broker and station must not depend on the working folder.
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "demo", "--quick", "--parts", "16", "--out", "demo"],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "== summary" in done.stdout and "escapes" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    truth = {p["part_id"]: p["label"] for p in json.loads((out / "truth.json").read_text())["parts"]}
    decisions = {d["part_id"]: d for d in json.loads((out / "decisions.json").read_text())}
    assert len(truth) == 16 and set(decisions) == set(truth)
    defect = {p: label != "good" for p, label in truth.items()}
    assert summary["parts"] == summary["decided"] == 16
    assert summary["accepted"] == sum(d["action"] == "accept" for d in decisions.values())
    assert summary["rejected"] == sum(d["action"] == "reject" for d in decisions.values())
    assert summary["escapes"] == sum(defect[p] and d["action"] == "accept" for p, d in decisions.items())
    assert summary["false_rejects"] == sum(not defect[p] and d["action"] == "reject" for p, d in decisions.items())
    # Every part was inspected by the station (a result per part id), none rejected for a missing result.
    results = json.loads((out / "results.json").read_text())
    assert set(results) == set(truth) and summary["timeouts"] == 0
    assert all(r["part_id"] == p for p, r in results.items())
    assert (out / "report.html").exists() and (out / "scores.png").exists()
    assert summary["station_exit_code"] == 0
    assert _processes_mentioning(str(out)) == []
