"""line.yaml's `mqtt.max_inflight` (the station's key, one shared MqttConfig) reaches the controller's paho client,
a wrong value is an error naming the key, and a window smaller than a part's trigger fan-out is warned about."""

import logging
from pathlib import Path

import pytest
import yaml

from controller.config import LineConfig
from controller.controller import LineController
from inspector.config import ConfigError, load_config


def _line_yaml(tmp_path: Path, mqtt: dict, stations=("cam1",), **top) -> Path:
    path = tmp_path / "line.yaml"
    data = {"line": "line1", "stations": list(stations), "mqtt": {"host": "localhost", **mqtt}, **top}
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_controllers_client_keeps_as_many_messages_in_flight_as_configured(tmp_path):
    cfg = load_config(LineConfig, _line_yaml(tmp_path, {"max_inflight": 120}))
    controller = LineController(cfg)  # builds its client; nothing connects before start()
    assert controller.client.client.max_inflight_messages == 120


@pytest.mark.parametrize("value", [0, 1001, "many", 2.5])
def test_a_wrong_value_is_an_error_naming_the_key(tmp_path, value):
    with pytest.raises(ConfigError, match=r"line\.yaml: key 'mqtt\.max_inflight'"):
        load_config(LineConfig, _line_yaml(tmp_path, {"max_inflight": value}))


def test_a_window_smaller_than_the_stations_a_part_triggers_is_warned_about(tmp_path, caplog):
    stations = [f"cam{i}" for i in range(25)]
    plc = {"input_topic": "plc/line1/part"}
    with caplog.at_level(logging.WARNING, logger="controller.controller"):
        LineController(load_config(LineConfig, _line_yaml(tmp_path, {}, stations, trigger=plc)))
    assert "each part triggers 25 stations but mqtt.max_inflight is 20" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="controller.controller"):
        LineController(load_config(LineConfig, _line_yaml(tmp_path, {"max_inflight": 25}, stations, trigger=plc)))
        LineController(load_config(LineConfig, _line_yaml(tmp_path, {}, stations)))  # no triggers: no fan-out
    assert "max_inflight" not in caplog.text
