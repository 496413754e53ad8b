"""The device side never loads TensorFlow: not when importing any module of ``inspector`` or ``edge``,
not for ``inspector --help`` or ``inspector run --help``. Each check runs in a fresh interpreter, since
other tests in this session load TensorFlow on purpose."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_importing_every_inspector_and_edge_module_leaves_tensorflow_out():
    proc = _run("""
        import importlib, pkgutil, sys
        import inspector, edge
        names = []
        for package in (inspector, edge):
            for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                importlib.import_module(info.name)
                names.append(info.name)
        print(len(names), sorted(n for n in sys.modules if n == "tensorflow" or n.startswith("tensorflow.")))
    """)
    assert proc.returncode == 0, proc.stderr
    count, loaded = proc.stdout.split(" ", 1)
    assert int(count) >= 15  # really walked the packages
    assert loaded.strip() == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]])
def test_cli_help_leaves_tensorflow_out(argv):
    proc = _run(f"""
        import sys
        from app.cli import main
        try:
            main({argv!r})
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        print("TF-LOADED" if "tensorflow" in sys.modules else "TF-ABSENT")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("TF-ABSENT")
    assert "usage: inspector" in proc.stdout
    if argv[0] == "run":
        assert "Exit codes:" in proc.stdout and "--source" in proc.stdout
