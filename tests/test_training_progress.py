"""`inspector train` on a terminal: one clean line per epoch with the time left by default, Keras' own bar
only with -v, and then never on the same line as the epoch line."""

import re

import pytest

from inspector.synth import generate
from tests.test_app_quiet import on_terminal

EPOCH_LINE = re.compile(r"^\w+ +epoch +(\d)/3 ")
BAR = re.compile(r"━|/step")  # Keras bar: the bar glyphs, or "N ms/step" on a plain terminal


def _train(tmp_path, *verbose: str) -> list:
    """The terminal lines of a 3-epoch run, each as the terminal shows it (the text after its last \\r)."""
    out = on_terminal(
        *verbose,
        "train",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / f"run{len(verbose)}"),
        "--weights",
        "none",
        "--epochs",
        "3",
        "--input-size",
        "32",
        "--batch-size",
        "8",
        "--set",
        "runtime.run_eagerly=true",
    )
    return [line.split("\r")[-1] for line in out.replace("\r\n", "\n").split("\n")]


@pytest.mark.slow
def test_one_line_per_epoch_by_default_and_the_bar_only_with_verbose(tmp_path):
    generate(tmp_path / "data", per_class=6, size=(32, 32), seed=3)
    quiet = _train(tmp_path)
    epochs = [line for line in quiet if "epoch" in line and "/3 " in line]
    assert [EPOCH_LINE.match(line).group(1) for line in epochs] == ["1", "2", "3"], quiet
    assert "left" in epochs[1]  # the expected remaining time, once an epoch without graph tracing was timed
    assert not any(BAR.search(line) for line in quiet), quiet
    verbose = _train(tmp_path, "-v")
    epochs = [line for line in verbose if "epoch" in line and "/3 " in line and "Epoch" not in line]
    assert [EPOCH_LINE.match(line).group(1) for line in epochs] == ["1", "2", "3"], verbose
    assert any(BAR.search(line) for line in verbose), verbose
