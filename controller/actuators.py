"""Reject-gate plugins, chosen by ``actuator.type`` in ``line.yaml``: ``log``, ``mqtt`` (PLC gateway) or ``gpio``.

Every plugin gets the same two calls: :meth:`Actuator.reject` for each rejected part and
:meth:`Actuator.set_line` when the line must stop or may run again (offline policy ``stop``). Accepted
parts need no action: the gate's resting state lets them through. That is why the PLC must also watch
the controller's retained ``status`` (last will ``offline``) and divert or stop the line when the controller
itself is gone (see docs/deployment.md).

Example:
    >>> from controller.config import LogActuatorConfig
    >>> gate = build_actuator(LogActuatorConfig())
    >>> gate.describe()
    'log'
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
from typing import Callable, Optional

from controller.config import ActuatorConfig, GpioActuatorConfig, LogActuatorConfig, MqttActuatorConfig
from inspector.protocol.enums import Action
from inspector.protocol.payloads import Decision

log = logging.getLogger(__name__)

Publish = Callable[[str, str, int], None]


class Actuator:
    """Base plugin: subclasses override what their hardware needs."""

    def reject(self, decision: Decision) -> None:
        raise NotImplementedError

    def set_line(self, running: bool, reason: str) -> None:
        """Stop (``running=False``) or release the line."""

    def describe(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Release the hardware; the gate returns to its resting state."""


class LogActuator(Actuator):
    def __init__(self, cfg: LogActuatorConfig):
        self.cfg = cfg

    def reject(self, decision: Decision) -> None:
        log.info("REJECT part %s (%s)", decision.part_id or "-", decision.reason)

    def set_line(self, running: bool, reason: str) -> None:
        log.log(logging.INFO if running else logging.WARNING, "LINE %s (%s)", "RUN" if running else "STOP", reason)

    def describe(self) -> str:
        return "log"


class MqttActuator(Actuator):
    """Publishes JSON commands that a PLC gateway (Node-RED, Kepware, a PLC's MQTT client) turns into I/O."""

    def __init__(self, cfg: MqttActuatorConfig, publish: Publish):
        self.cfg = cfg
        self._publish = publish

    def reject(self, decision: Decision) -> None:
        payload = {
            "action": Action.REJECT.value,
            "part_id": decision.part_id,
            "reason": decision.reason,
            "ts": decision.ts,
        }
        self._publish(self.cfg.topic, json.dumps(payload), self.cfg.qos)

    def set_line(self, running: bool, reason: str) -> None:
        if self.cfg.line_topic:
            payload = {"action": "run" if running else "stop", "reason": reason, "ts": time.time()}
            self._publish(self.cfg.line_topic, json.dumps(payload), self.cfg.qos)

    def describe(self) -> str:
        return f"mqtt -> {self.cfg.topic}"


class _Output:
    """One digital output through whichever GPIO library the board has."""

    def __init__(self, pin: int, active_high: bool):
        self.pin = pin
        self.active_high = active_high
        problems = []
        try:
            gpiozero = importlib.import_module("gpiozero")
            self._device = gpiozero.DigitalOutputDevice(pin, active_high=active_high, initial_value=False)
            self.library = "gpiozero"
            return
        except Exception as exc:  # not installed, or no usable pin factory on this board
            problems.append(f"gpiozero: {exc}")
        self._device = None
        for name in ("Jetson.GPIO", "RPi.GPIO"):
            try:
                self._gpio = importlib.import_module(name)
            except (ImportError, RuntimeError) as exc:  # RPi.GPIO raises RuntimeError off a Raspberry Pi
                problems.append(f"{name}: {exc}")
                continue
            self.library = name
            self._gpio.setmode(self._gpio.BCM)
            self._gpio.setup(pin, self._gpio.OUT, initial=self._level(False))
            return
        raise RuntimeError(
            "the gpio actuator needs gpiozero or RPi.GPIO (Raspberry Pi) or Jetson.GPIO (Jetson); "
            f"install one, or use actuator type log or mqtt ({'; '.join(problems)})"
        )

    def _level(self, on: bool):
        return self._gpio.HIGH if on == self.active_high else self._gpio.LOW

    def set(self, on: bool) -> None:
        if self._device is not None:
            self._device.on() if on else self._device.off()
        else:
            self._gpio.output(self.pin, self._level(on))

    @property
    def is_on(self) -> bool:
        if self._device is not None:
            return bool(self._device.value)
        return self._gpio.input(self.pin) == self._level(True)

    def close(self) -> None:
        self.set(False)
        if self._device is not None:
            self._device.close()
        else:
            self._gpio.cleanup(self.pin)


class GpioActuator(Actuator):
    """Pulses the reject output for ``pulse_ms``; a reject during a pulse extends it rather than re-triggering."""

    def __init__(self, cfg: GpioActuatorConfig):
        self.cfg = cfg
        self.output = _Output(cfg.pin, cfg.active_high)
        self.stop_output = _Output(cfg.stop_pin, cfg.active_high) if cfg.stop_pin is not None else None
        self._lock = threading.Lock()
        self._timer: Optional[threading.Timer] = None

    def reject(self, decision: Decision) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self.output.set(True)
            self._timer = threading.Timer(self.cfg.pulse_ms / 1000.0, self._release)
            self._timer.daemon = True
            self._timer.start()

    def _release(self) -> None:
        with self._lock:
            self.output.set(False)
            self._timer = None

    def set_line(self, running: bool, reason: str) -> None:
        if self.stop_output is not None:
            self.stop_output.set(not running)

    def describe(self) -> str:
        return f"gpio pin {self.cfg.pin} via {self.output.library}"

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        self.output.close()
        if self.stop_output is not None:
            self.stop_output.close()


def build_actuator(cfg: ActuatorConfig, publish: Optional[Publish] = None) -> Actuator:
    """The plugin for ``cfg.type``; ``publish(topic, payload, qos)`` is the controller's MQTT connection."""
    if isinstance(cfg, LogActuatorConfig):
        return LogActuator(cfg)
    if isinstance(cfg, MqttActuatorConfig):
        if publish is None:
            raise ValueError("the mqtt actuator needs the controller's MQTT connection")
        return MqttActuator(cfg, publish)
    if isinstance(cfg, GpioActuatorConfig):
        return GpioActuator(cfg)
    raise ValueError(f"unknown actuator type {getattr(cfg, 'type', cfg)!r}")
