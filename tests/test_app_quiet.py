"""At the default verbosity `inspector train` and `inspector calibrate` on a terminal show no TensorFlow, absl,
oneDNN, XNNPACK or converter line; with -v the libraries' own logs come back."""

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from inspector.synth import generate

ROOT = Path(__file__).resolve().parents[1]
NOISE = re.compile(
    r"tensorflow|absl|onednn|xnnpack|cpu_feature_guard|fully_quantize|mlir|savedmodel|"
    r"^[iwe]\d{4} |instructions in performance-critical",
    re.I | re.M,
)


def on_terminal(*args: str, timeout: float = 300) -> str:
    """Run ``inspector ARGS`` with stdout and stderr on a pseudo-terminal; its output, after a zero exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "GLOG_", "GRPC_"))}
    env["PYTHONPATH"] = str(ROOT)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_train_and_calibrate_print_no_library_lines(tmp_path):
    generate(tmp_path / "data", per_class=6, size=(32, 32), seed=3)
    run, bundle = tmp_path / "run", tmp_path / "m.inspector"
    train = on_terminal(
        "train",
        str(tmp_path / "data"),
        "--out",
        str(run),
        "--weights",
        "none",
        "--epochs",
        "1",
        "--input-size",
        "32",
        "--batch-size",
        "8",
        "--progress",
        "lines",
        "--set",
        "runtime.run_eagerly=true",
    )
    assert "run folder:" in train
    assert not NOISE.search(train), NOISE.search(train).group(0)
    calibrate = on_terminal("calibrate", str(run), "--out", str(bundle), "--force", "--representative-size", "8")
    assert bundle.is_file()
    assert not NOISE.search(calibrate), NOISE.search(calibrate).group(0)
    verbose = on_terminal("-v", "predict", str(bundle), str(tmp_path / "data" / "good"))
    assert "XNNPACK" in verbose  # the same run with -v shows the runtime's own line: the filter is what hides it


def test_a_config_typo_is_reported_before_tensorflow_loads(tmp_path):
    generate(tmp_path / "data", per_class=2, size=(32, 32), seed=3)
    code = (
        "import sys; from app.cli import main; "
        f"rc = main(['train', {str(tmp_path / 'data')!r}, '--out', {str(tmp_path / 'run')!r}, "
        "'--set', 'optim.epochz=3']); print('tensorflow' in sys.modules, rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert done.stdout.split() == ["False", "1"], done.stderr
    assert "unknown key 'optim.epochz'" in done.stderr and not (tmp_path / "run").exists()
