"""The demo's stage clock: CPU time of the process and its children per stage, so a run on a shared machine
can be told apart from a slow one; and the summary rows that show it."""

import subprocess
import sys

import pytest

from app.demo.clock import StageClock
from app.demo.report import summary_rows


def test_stage_counts_a_finished_child_and_survives_an_error():
    clock = StageClock()
    with clock.stage("child"):
        # a station-like child process that burns CPU and is waited for
        subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    with pytest.raises(RuntimeError):
        with clock.stage("failed"):
            raise RuntimeError("boom")
    clock.finish()
    assert list(clock.wall) == ["child", "failed", "total"]
    assert clock.cpu["child"] > 0.05  # the child's CPU, not only this process's
    assert clock.cpu["total"] >= clock.cpu["child"]
    data = clock.to_dict()
    assert len(data["load_average"]["start"]) == len(data["load_average"]["end"]) == 3


def test_summary_rows_show_cpu_and_load_when_recorded():
    base = {
        "decided": 1,
        "parts": 1,
        "accepted": 1,
        "rejected": 0,
        "timeouts": 0,
        "escapes": 0,
        "false_rejects": 0,
        "unseen_caught": 0,
        "unseen_defects": 0,
        "camera_fps": 10,
        "inference_ms_p50": 1,
        "inference_ms_p99": 2,
        "trigger_to_decision_ms_p50": 3,
        "trigger_to_decision_ms_p99": 4,
        "timings_s": {"train_s": 100.0},
    }
    assert [what for what, _ in summary_rows(base)][-1] == "time"
    clock = {"cpu_s": {"train": 180.5}, "load_average": {"start": [6.5, 5, 4], "end": [7.25, 6, 5]}}
    rows = dict(summary_rows({**base, "clock": clock}))
    assert rows["cpu"].startswith("train 180.5 s")
    assert rows["load average"].startswith("6.5 at start, 7.25 at end")
    assert dict(summary_rows(base))["inference"] == "p50 1 ms, p99 2 ms"  # a summary from before the mode was kept
    with_mode = dict(summary_rows({**base, "inference_mode": "flip averaging hvflip"}))
    assert with_mode["inference"] == "p50 1 ms, p99 2 ms (flip averaging hvflip)"  # four model runs in those ms
