"""The habits that keep the layering: import-linter contracts, ruff (lint and format) and mypy pass on the
tree, and each one fails on a violation planted in a temporary copy (the real tree is never edited)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PACKAGES = ("inspector", "edge", "training", "calibration", "controller", "review", "app")


def _run(tool: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    exe = BIN / tool
    if not exe.exists():
        pytest.skip(f"{tool} is not installed (pip install -e '.[dev]')")
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _copy_tree(dest: Path, packages=PACKAGES) -> Path:
    """The Python sources of ``packages`` and pyproject.toml, copied to ``dest``."""
    for name in packages:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def _plant(path: Path, code: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n" + code + "\n")


def test_import_contracts_hold():
    proc = _run("lint-imports", "--no-cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(
    "module, code, contract",
    [
        ("controller/planted.py", "import edge.config", "depends on the core only"),
        ("review/planted.py", "import controller.config", "review page depends on the core only"),
        ("edge/planted.py", "import tensorflow", "without TensorFlow"),
        ("inspector/planted.py", "import app.cli", "Layers"),
        ("training/planted.py", "import edge.runtime", "Layers"),
    ],
)
def test_import_contracts_fail_on_a_wrong_way_import(tmp_path, module, code, contract):
    tree = _copy_tree(tmp_path)
    _plant(tree / module, code)
    proc = _run("lint-imports", "--no-cache", cwd=tree)
    assert proc.returncode != 0, proc.stdout
    broken = [line for line in proc.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), proc.stdout


def test_ruff_check_passes():
    proc = _run("ruff", "check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_check_fails_on_a_planted_violation(tmp_path):
    tree = _copy_tree(tmp_path, packages=("inspector",))
    _plant(tree / "inspector" / "fsutil.py", "import sys")  # unused import: F401
    proc = _run("ruff", "check", "--no-cache", ".", cwd=tree)
    assert proc.returncode != 0
    assert "F401" in proc.stdout


def test_ruff_format_check_passes():
    proc = _run("ruff", "format", "--check", "--no-cache", ".")
    assert proc.returncode == 0, "run `ruff format .`:\n" + proc.stdout + proc.stderr


def test_ruff_format_check_fails_on_a_planted_violation(tmp_path):
    tree = _copy_tree(tmp_path, packages=("inspector",))
    _plant(tree / "inspector" / "fsutil.py", "planted = {'a':1,\n  'b' : 2}")  # spacing and quotes ruff rewrites
    proc = _run("ruff", "format", "--check", "--no-cache", ".", cwd=tree)
    assert proc.returncode != 0
    assert "inspector/fsutil.py" in proc.stdout


def test_mypy_passes(tmp_path):
    proc = _run("mypy", "--cache-dir", str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_fails_on_a_planted_type_error(tmp_path):
    tree = _copy_tree(tmp_path / "tree", packages=("inspector", "edge", "review"))
    _plant(tree / "inspector" / "fsutil.py", 'def _planted() -> int:\n    return "not a number"')
    proc = _run("mypy", "--cache-dir", str(tmp_path / "cache"), cwd=tree)
    assert proc.returncode != 0
    assert "fsutil.py" in proc.stdout and "return-value" in proc.stdout
