"""deploy/install.sh: valid bash, and its --dry-run plan picks the right runtime and OpenCV per device."""

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "install.sh"


def plan(*args) -> str:
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def commands(text: str) -> list:
    return [line[2:] for line in text.splitlines() if line.startswith("+ ")]


def test_bash_syntax_and_shellcheck():
    scripts = [str(SCRIPT), str(ROOT / "deploy" / "mosquitto" / "add-station.sh")]
    for script in scripts:
        subprocess.run(["bash", "-n", script], check=True)
    if shutil.which("shellcheck"):
        out = subprocess.run(["shellcheck", "-S", "warning", *scripts], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout


def test_32bit_raspberry_pi_gets_tflite_runtime_with_numpy_1_and_libcamera():
    text = plan("--platform", "rpi", "--arch", "armv7l")
    cmds = commands(text)
    assert "TFLite runtime: tflite-runtime" in text
    assert any(
        c.endswith("--constraint " + str(ROOT / "deploy/docker/constraints.txt") + " tflite-runtime") for c in cmds
    )
    assert any("gstreamer1.0-libcamera" in c and "python3-opencv" in c for c in cmds)
    assert "import tflite_runtime.interpreter" in text


def test_jetson_uses_ai_edge_litert_and_the_system_gstreamer_opencv():
    cmds = commands(plan("--platform", "jetson", "--arch", "aarch64"))
    assert not any("tflite-runtime" in c for c in cmds)
    assert any("venv --system-site-packages" in c for c in cmds)
    assert "/opt/inspector/venv/bin/pip uninstall -y opencv-python-headless" in cmds
    assert not any("libcamera" in c for c in cmds)
    assert any("import ai_edge_litert.interpreter" in c for c in cmds)


def test_pypi_opencv_keeps_the_wheel_and_needs_no_numpy_pin_on_64_bit():
    cmds = commands(plan("--platform", "generic", "--arch", "x86_64", "--pypi-opencv"))
    assert not any("python3-opencv" in c or "uninstall" in c or "--constraint" in c for c in cmds)
    assert not any("--system-site-packages" in c for c in cmds)


def test_broker_and_sparkplug_options():
    cmds = commands(plan("--platform", "generic", "--arch", "aarch64", "--with-broker", "--with-sparkplug"))
    assert any(c.endswith("--no-deps pysparkplug>=0.6.1,<0.7") for c in cmds)
    assert any(c.startswith("install -m 0644") and c.endswith("/etc/mosquitto/mosquitto.conf") for c in cmds)
    assert "systemctl restart mosquitto" in cmds


def test_every_shipped_file_it_installs_exists():
    text = plan("--platform", "generic", "--arch", "aarch64", "--with-broker")
    sources = set(re.findall(re.escape(str(ROOT)) + r"/(deploy/[\w./@-]+)", text))
    assert {"deploy/systemd/inspector-station@.service", "deploy/mosquitto/acl"} <= sources
    for source in sources:
        assert (ROOT / source).exists(), source


def test_unknown_option_is_refused():
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--frobnicate"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown option" in out.stderr


def test_unsupported_architecture_is_refused():
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--arch", "mips"], capture_output=True, text=True)
    assert out.returncode == 1 and "unsupported architecture" in out.stderr
