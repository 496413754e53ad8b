"""The training benchmarks' shared options: both scripts keep theirs, and --append keeps the runs of what is
not measured again. Nothing is trained or timed."""

import argparse
import json

import pytest

from bench import train_magnetic_tile, train_synthetic
from bench.train_magnetic_tile import kept_runs


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
