"""`inspector controller`: config loading and errors, and a whole simulated run against a real broker."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from app.cli import main
from inspector.exitcodes import ExitCode
from tests.fixtures_controller import AMQTT_UNRELIABLE, require_mosquitto, result_payload
from tests.fixtures_mqtt import Broker

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path, data) -> str:
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_the_shipped_example_config_is_valid():
    from controller.config import LineConfig
    from inspector.config import load_config

    cfg = load_config(LineConfig, ROOT / "deploy" / "line.example.yaml")
    assert cfg.actuator.type == "mqtt" and cfg.trigger.input_topic == "plc/line1/part"
    assert cfg.mqtt_client_id == "inspector-line1-controller"


def test_unknown_key_is_an_error_naming_it(tmp_path, capsys):
    path = _write(tmp_path, {"line": "l1", "result_deadline": 2})
    assert main(["controller", "--config", path]) == ExitCode.CONFIG  # the unit does not restart on it
    assert "unknown key 'result_deadline'" in capsys.readouterr().err


def test_triggers_without_stations_are_refused(tmp_path, capsys):
    path = _write(tmp_path, {"line": "l1"})
    assert main(["controller", "--config", path, "--trigger-rate", "5"]) == ExitCode.CONFIG
    assert "triggers need a list of stations" in capsys.readouterr().err


def test_simulated_run_until_done(shared_broker: Broker, tmp_path, capsys):
    line = "cli-line"
    require_mosquitto(shared_broker, AMQTT_UNRELIABLE)
    path = _write(
        tmp_path,
        {
            "line": line,
            "stations": ["cam1"],
            "result_deadline_s": 5,
            "mqtt": {"host": shared_broker.host, "port": shared_broker.port, "protocol": shared_broker.protocol},
        },
    )
    station = shared_broker.subscriber([f"inspector/{line}/cam1/cmd"])

    def answer(client, userdata, msg):
        part_id = json.loads(msg.payload)["part_id"]
        client.publish(f"inspector/{line}/cam1/result", result_payload(line, "cam1", part_id, "pass"), qos=1)

    station.client.message_callback_add(f"inspector/{line}/cam1/cmd", answer)
    try:
        code = main(
            ["controller", "--config", path, "--trigger-rate", "20", "--count", "5", "--until-done", "--duration", "60"]
        )
    finally:
        station.close()
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["triggers_sent"], summary["parts"], summary["accepted"], summary["pending"]) == (5, 5, 5, 0)


def test_help_is_fast_and_imports_no_tensorflow():
    code = (
        "import sys; from app.cli import main\n"
        "try:\n    main(['controller', '--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['monitor', '--help'])\nexcept SystemExit:\n    pass\n"
        "import controller.controller, controller.sparkplug, controller.monitor, edge.homeassistant\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    assert "inspector controller --config" in out.stdout and "inspector monitor" in out.stdout
