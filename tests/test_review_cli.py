"""`inspector review` start-up, as a user runs it: a port another program holds is one clear error line and a
non-zero exit; the server it starts on a free port serves the page at the address it prints."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("uvicorn", reason="the review extra is not installed")

ROOT = Path(__file__).resolve().parents[1]


def _review(tmp_path: Path, *options: str) -> list:
    archive = tmp_path / "archive"
    archive.mkdir(exist_ok=True)
    return [sys.executable, "-m", "app.cli", "review", str(tmp_path / "data"), "--archive", str(archive), *options]


def test_a_port_in_use_is_one_clear_error(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = subprocess.run(
            _review(tmp_path, "--port", str(port)), capture_output=True, text=True, timeout=60, cwd=ROOT
        )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"inspector review: error: port {port} on 127.0.0.1 is in use; choose another with --port"
    ]
    assert proc.stdout == ""


def test_port_0_serves_the_page_at_the_printed_address(tmp_path):
    proc = subprocess.Popen(
        _review(tmp_path, "--port", "0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        line = proc.stdout.readline()  # printed once the socket listens
        assert line.startswith("inspector review: http://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
        url = line.split()[2]
        assert not url.endswith(":0/")
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and "<html" in response.read().decode().lower()
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl+C, as the printed line says: a normal end
        proc.wait(30)
    assert proc.returncode == 0, proc.stderr.read()
