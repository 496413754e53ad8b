"""deploy/station.local.yaml and deploy/line.local.yaml run as written against a local Mosquitto: no secrets,
no system paths, a triggered part goes station -> broker -> controller and is decided from its result."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from app.demo.video import render_line_video
from edge.config import load_station_config
from tests.fixtures_controller import require_mosquitto

ROOT = Path(__file__).resolve().parents[1]
STATION = ROOT / "deploy" / "station.local.yaml"
LINE = ROOT / "deploy" / "line.local.yaml"
SECRETS = ("MQTT_PASSWORD", "CAMERA_PASSWORD", "CAMERA_USER", "STATE_DIRECTORY")


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return dict(env, PYTHONPATH=str(ROOT), HOME=str(tmp_path / "home"), XDG_STATE_HOME=str(tmp_path / "state"))


def test_local_examples_name_no_secret_and_no_system_path():
    for path in (STATION, LINE):
        text = "\n".join(line.split("#")[0] for line in path.read_text().splitlines())
        assert "${" not in text and "password" not in text and "/var/lib" not in text and "/etc/" not in text
        assert yaml.safe_load(text)["mqtt"]["host"] == "localhost"


def test_local_station_and_controller_decide_parts_on_a_real_broker(mqtt_broker, int8_bundle, tmp_path, monkeypatch):
    require_mosquitto(mqtt_broker, "speaks MQTT 3.1.1 only; the local examples use MQTT 5 like a station's default")
    work = tmp_path / "work"  # the folder a user starts from after `make demo`
    (work / "demo-out").mkdir(parents=True)
    (work / "demo-out" / "demo.inspector").symlink_to(int8_bundle)
    render_line_video(work / "demo-out" / "line.avi", ["good", "scratch"] * 3, seed=0)
    env, broker = _env(tmp_path), f"{mqtt_broker.host}:{mqtt_broker.port}"

    def start(*args) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args, "--broker", broker],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    status = mqtt_broker.subscriber(["inspector/line1/cam1/status", "inspector/line1/cam1/result"])
    station = start("run", "--config", str(STATION))
    try:
        status.wait_for(lambda r: any(m.text == "online" for m in r.on("status")), 120, "the station online")
        controller = start("controller", "--config", str(LINE), "--count", "3", "--until-done")
        out, err = controller.communicate(timeout=120)
        assert controller.returncode == 0, err
    finally:
        station.send_signal(signal.SIGTERM)
        station_out, station_err = station.communicate(timeout=60)
        status.close()
    state = json.loads(out[out.index("{") :])
    assert state["parts"] == 3 and state["results"] >= 3, state
    assert not set(state["reject_reasons"]) & {"timeout", "station_offline"}, state  # decided from results
    assert station.returncode == 0, station_err
    assert station_out.startswith("3 part(s):"), station_out  # its summary: one part per trigger
    # its files went to the XDG state directory, none into the folder it was started from
    monkeypatch.setenv("XDG_STATE_HOME", env["XDG_STATE_HOME"])
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    cfg = load_station_config(STATION)
    assert cfg.outbox.path == tmp_path / "state" / "inspector" / "line1" / "cam1" / "outbox.sqlite"
    assert cfg.outbox.path.is_file()
    assert sorted(p.name for p in work.iterdir()) == ["demo-out"]
