"""The training benchmarks' times and options: a run reused with --reuse takes its training time from its own
history.json, the summary's seconds_per_run says what was measured, both scripts keep their options, and
--append keeps the runs of what is not measured again. A tiny fake run folder; nothing is trained or timed."""

import argparse
import json

import pytest

from bench import train_magnetic_tile, train_synthetic
from bench.train_magnetic_tile import (
    TRAIN_FROM_HISTORY,
    TRAIN_FROM_WALL,
    kept_runs,
    run_seconds,
    seconds_per_run,
    took,
)


def _run_folder(tmp_path, epoch_seconds):
    """A run folder with only what the times read: history.json, one record per epoch as the trainer writes it."""
    run = tmp_path / "seed0"
    run.mkdir()
    history = [
        {"stage": "full", "stage_index": 0, "epoch": i + 1, "global_epoch": i + 1, "loss": 1.0, "seconds": s}
        for i, s in enumerate(epoch_seconds)
    ]
    (run / "history.json").write_text(json.dumps(history))
    return run


def test_a_reused_run_takes_its_train_time_from_its_own_history(tmp_path):
    epochs = [235.33, 27.08, 38.76]
    seconds = run_seconds(_run_folder(tmp_path, epochs), None, 61.04)
    assert seconds == {
        "train": round(sum(epochs), 1),
        "train_from": TRAIN_FROM_HISTORY,
        "calibrate": 61.0,
        "total": round(sum(epochs) + 61.04, 1),
        "epochs": round(sum(epochs), 1),
    }
    assert took({"seconds": seconds}) == f"{sum(epochs) + 61.04:.0f} s (train from the run's history)"


def test_a_run_trained_in_this_process_keeps_its_wall_time(tmp_path):
    seconds = run_seconds(_run_folder(tmp_path, [10.0, 12.0]), 30.04, 5.0)
    assert (seconds["train"], seconds["train_from"], seconds["total"], seconds["epochs"]) == (
        30.0,
        TRAIN_FROM_WALL,
        35.0,
        22.0,
    )
    assert took({"seconds": seconds}) == "35 s"


def _run(total, train_from):
    return {"seconds": {"train": None if total is None else total - 10, "train_from": train_from, "total": total}}


def test_seconds_per_run_is_the_mean_of_the_known_totals_and_says_what_was_measured():
    older = {
        "seconds": {"train": None, "calibrate": 10.0, "total": None}
    }  # a result file from before: kept by --append
    mixed = seconds_per_run([_run(100.0, TRAIN_FROM_WALL), _run(200.0, TRAIN_FROM_HISTORY), older])
    assert (mixed["mean"], mixed["min"], mixed["max"], mixed["runs"], mixed["train_from_history"]) == (
        150.0,
        100.0,
        200.0,
        2,
        1,
    )
    assert "wall time of `inspector train` in 1 run(s)" in mixed["measured"]
    assert "history.json in 1 reused run(s)" in mixed["measured"]

    wall = seconds_per_run([_run(100.0, TRAIN_FROM_WALL)])
    assert wall["train_from_history"] == 0 and "history" not in wall["measured"]
    reused = seconds_per_run([_run(100.0, TRAIN_FROM_HISTORY), _run(300.0, TRAIN_FROM_HISTORY)])
    assert reused["mean"] == 200.0 and "wall time of `inspector train`" not in reused["measured"]
    assert seconds_per_run([older]) is None


@pytest.mark.parametrize(
    ("module", "runs_flag", "own"),
    [(train_magnetic_tile, "--runs-dir", "--seeds"), (train_synthetic, "--work", "--datasets")],
)
def test_both_training_benchmarks_keep_their_options(module, runs_flag, own, capsys):
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in (own, "--set", runs_flag, "--out", "--append", "--reuse"):
        assert option in text, option


def test_append_keeps_the_runs_that_are_not_measured_again(tmp_path):
    out = tmp_path / "result.json"
    out.write_text(json.dumps({"runs": [{"split_seed": 0}, {"split_seed": 1}, {"split_seed": 2}]}))
    args = argparse.Namespace(append=True, out=out)
    assert kept_runs(args, "split_seed", [1, 3]) == [{"split_seed": 0}, {"split_seed": 2}]
    assert kept_runs(argparse.Namespace(append=False, out=out), "split_seed", [1]) == []
    assert kept_runs(argparse.Namespace(append=True, out=tmp_path / "none.json"), "split_seed", [1]) == []
