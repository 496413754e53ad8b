"""Reject-gate plugins. The MQTT gate end to end is in test_controller_controller.py; GPIO uses gpiozero's
own mock pin factory (there is no GPIO header on this machine)."""

import json
import logging
import sys
import time

import pytest

from controller.actuators import GpioActuator, LogActuator, MqttActuator, build_actuator
from controller.config import GpioActuatorConfig, LineConfig, LogActuatorConfig, MqttActuatorConfig
from inspector.protocol.payloads import Decision

DECISION = Decision(ts=1.0, part_id="P9", action="reject", reason="timeout", missing=["cam1"])


def test_actuator_is_chosen_by_type_and_unknown_types_name_the_key():
    assert isinstance(build_actuator(LogActuatorConfig()), LogActuator)
    assert isinstance(build_actuator(MqttActuatorConfig(type="mqtt", topic="plc/x"), lambda *a: None), MqttActuator)
    with pytest.raises(ValueError, match="MQTT connection"):
        build_actuator(MqttActuatorConfig(type="mqtt", topic="plc/x"))
    with pytest.raises(ValueError, match="actuator"):
        LineConfig.model_validate({"line": "l", "actuator": {"type": "relay"}})
    with pytest.raises(ValueError, match="pin"):
        LineConfig.model_validate({"line": "l", "actuator": {"type": "gpio"}})


def test_log_actuator_logs_rejects_and_line_stops(caplog):
    gate = build_actuator(LogActuatorConfig())
    with caplog.at_level(logging.INFO, logger="controller.actuators"):
        gate.reject(DECISION)
        gate.set_line(False, "cam1 offline")
    assert "REJECT part P9 (timeout)" in caplog.text and "LINE STOP (cam1 offline)" in caplog.text


def test_mqtt_actuator_payloads():
    sent = []
    gate = build_actuator(
        MqttActuatorConfig(type="mqtt", topic="plc/l1/reject", line_topic="plc/l1/line", qos=1),
        lambda topic, payload, qos: sent.append((topic, json.loads(payload), qos)),
    )
    gate.reject(DECISION)
    gate.set_line(True, "all stations online")
    assert sent[0] == ("plc/l1/reject", {"action": "reject", "part_id": "P9", "reason": "timeout", "ts": 1.0}, 1)
    assert (sent[1][0], sent[1][1]["action"]) == ("plc/l1/line", "run")


@pytest.fixture
def mock_pins(monkeypatch):
    gpiozero = pytest.importorskip("gpiozero")
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    monkeypatch.setattr(gpiozero.Device, "pin_factory", factory)
    yield factory
    factory.reset()


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_gpio_actuator_pulses_the_reject_pin_and_holds_the_stop_pin(mock_pins):
    gate = GpioActuator(GpioActuatorConfig(type="gpio", pin=17, pulse_ms=50, stop_pin=27))
    assert gate.describe() == "gpio pin 17 via gpiozero"
    reject_pin, stop_pin = mock_pins.pin(17), mock_pins.pin(27)
    assert not reject_pin.state and not stop_pin.state
    gate.reject(DECISION)
    assert reject_pin.state  # on at once
    _wait(lambda: not reject_pin.state)  # and off again after the pulse
    gate.set_line(False, "cam1 offline")
    assert stop_pin.state
    gate.set_line(True, "back")
    assert not stop_pin.state
    gate.reject(DECISION)
    gate.close()
    assert not reject_pin.state  # closing releases the gate


def test_gpio_actuator_active_low_inverts_the_levels(mock_pins):
    gate = GpioActuator(GpioActuatorConfig(type="gpio", pin=22, pulse_ms=5000, active_high=False))
    pin = mock_pins.pin(22)
    assert pin.state  # resting = high on an active-low relay board
    gate.reject(DECISION)
    assert not pin.state
    gate.close()


def test_gpio_actuator_without_a_gpio_library_says_what_to_install(monkeypatch):
    for name in ("gpiozero", "Jetson", "Jetson.GPIO", "RPi", "RPi.GPIO"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail like a missing package
    with pytest.raises(RuntimeError, match="needs gpiozero or RPi.GPIO"):
        GpioActuator(GpioActuatorConfig(type="gpio", pin=17))
