"""The boards get wheels: every requirement of the core and the ``edge`` extra resolves to a binary wheel for
aarch64 on the Python of each supported board OS, straight from the package index (``pip download
--only-binary=:all:``), so a station installs there without compiling anything. Skips, with the reason,
when the package index cannot be reached (an air-gapped build machine)."""

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

ROOT = Path(__file__).resolve().parents[1]

# (board OS, Python, glibc): the glibc bounds the manylinux tags pip may pick, as pip on the board would.
BOARDS = [
    ("JetPack 6 (Ubuntu 22.04)", "3.10", (2, 35)),
    ("Raspberry Pi OS bookworm, 64-bit", "3.11", (2, 36)),
]


def edge_requirements(python: str, machine: str = "aarch64") -> list:
    """The core's and the edge extra's requirements whose markers hold on that board (read from pyproject)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = dict(
        default_environment(),
        platform_machine=machine,
        python_version=python,
        python_full_version=f"{python}.0",
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        extra="edge",
    )
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["edge"]]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def _pinned(requirements) -> list:
    """Name and version range only: pip would judge the markers on this machine, not on the board."""
    return [f"{r.name}{r.specifier}" for r in requirements]


def _pip_download(
    python: str, glibc: tuple, requirements: list, dest: Path, no_deps: bool = True, machine: str = "aarch64"
):
    abi = "cp" + python.replace(".", "")
    platforms = [f"manylinux2014_{machine}"] + [f"manylinux_{glibc[0]}_{m}_{machine}" for m in range(17, glibc[1] + 1)]
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--disable-pip-version-check"]
    cmd += ["--python-version", python, "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none"]
    cmd += [arg for p in platforms for arg in ("--platform", p)]
    cmd += (["--no-deps"] if no_deps else []) + ["-d", str(dest), *requirements]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _index_url() -> str:
    """The package index pip uses here (PIP_INDEX_URL, pip's configuration, or PyPI)."""
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        got = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"], capture_output=True, text=True
        )
        url = got.stdout.strip() if got.returncode == 0 and got.stdout.strip() else "https://pypi.org/simple"
    return url.rstrip("/")


def _require_index(url: str) -> None:
    try:
        with urllib.request.urlopen(f"{url}/numpy/", timeout=20) as answer:
            answer.read(1)
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, a bad URL
        pytest.skip(f"the package index {url} is unreachable: {exc}")


def test_edge_requirements_are_read_from_pyproject():
    names = {r.name for r in edge_requirements("3.11")}
    assert {"numpy", "opencv-python-headless", "paho-mqtt", "pydantic", "PyYAML", "ai-edge-litert"} <= names
    bookworm32, bullseye32 = ({r.name for r in edge_requirements(v, machine="armv7l")} for v in ("3.11", "3.9"))
    assert not {"ai-edge-litert", "tflite-runtime"} & bookworm32  # no wheel: `inspector run` explains instead
    assert "tflite-runtime" in bullseye32 and "ai-edge-litert" not in bullseye32


@pytest.mark.parametrize("board, python, glibc", BOARDS, ids=[b[0] for b in BOARDS])
def test_every_edge_requirement_has_an_aarch64_wheel(board, python, glibc, tmp_path):
    _require_index(_index_url())
    requirements = _pinned(edge_requirements(python))
    for no_deps in (True, False):  # each requirement itself, then with what it depends on (pydantic-core, ...)
        proc = _pip_download(python, glibc, requirements, tmp_path, no_deps=no_deps)
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        assert proc.returncode == 0, f"{board}, Python {python}, aarch64: {last}"  # pip names the requirement
        if no_deps:
            wheels = sorted(p.name for p in tmp_path.glob("*.whl"))
            assert len(wheels) == len(requirements), wheels


def test_the_32_bit_runtime_has_a_wheel_for_raspberry_pi_os_bullseye(tmp_path):
    """armv7l, Python 3.9, glibc 2.31: tflite-runtime comes from PyPI (numpy and OpenCV from piwheels or apt)."""
    _require_index(_index_url())
    runtime = _pinned(r for r in edge_requirements("3.9", machine="armv7l") if r.name == "tflite-runtime")
    proc = _pip_download("3.9", (2, 31), runtime, tmp_path, machine="armv7l")
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in tmp_path.glob("tflite_runtime-*armv7l.whl")]
