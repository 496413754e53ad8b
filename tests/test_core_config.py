"""Typed configuration: unknown keys, wrong types and secrets from the environment."""

from typing import Optional

import pytest
from pydantic import Field

from inspector.config import ConfigError, StrictModel, load_config, parse_override


class Mqtt(StrictModel):
    host: str = Field("localhost", description="broker")
    port: int = Field(1883, description="port")
    password: Optional[str] = Field(None, description="secret")


class Station(StrictModel):
    name: str = Field(description="station name")
    mqtt: Mqtt = Field(default_factory=Mqtt, description="broker settings")


def test_unknown_key_is_named_with_the_file(tmp_path):
    path = tmp_path / "station.yaml"
    path.write_text("name: cam1\nmqtt:\n  host: b\n  prot: 1884\n")
    with pytest.raises(ConfigError) as err:
        load_config(Station, path)
    assert "station.yaml" in str(err.value) and "unknown key 'mqtt.prot'" in str(err.value)


def test_wrong_type_and_missing_key_are_named(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("mqtt:\n  port: eighteen\n")
    message = str(pytest.raises(ConfigError, load_config, Station, path).value)
    assert "key 'mqtt.port'" in message and "eighteen" in message
    assert "missing required key 'name'" in message


def test_environment_substitution(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text("name: ${STATION:-cam9}\nmqtt:\n  password: ${MQTT_PASSWORD}\n")
    monkeypatch.setenv("MQTT_PASSWORD", "s3cret")
    cfg = load_config(Station, path)
    assert cfg.mqtt.password == "s3cret" and cfg.name == "cam9"
    monkeypatch.delenv("MQTT_PASSWORD")
    with pytest.raises(ConfigError, match="MQTT_PASSWORD is not set"):
        load_config(Station, path)


def test_overrides_reach_nested_fields(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: cam1\n")
    key, value = parse_override("mqtt.port=1884")
    cfg = load_config(Station, path, {key: value})
    assert cfg.mqtt.port == 1884
    with pytest.raises(ConfigError, match="unknown key 'mqtt.nope'"):
        load_config(Station, path, {"mqtt.nope": 1})


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_config(Station, path)
