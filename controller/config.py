"""Typed configuration of the line controller (``line.yaml``), validated like every other config file.

The controller decides, for every part, whether the reject gate fires. Its config says which stations
inspect a part, how long to wait for their results (fail-safe deadline), what to do when a station goes
offline, which actuator drives the gate, and, for tests and the demo, how to trigger the stations itself.

Example:
    >>> cfg = LineConfig.model_validate({"line": "line1", "stations": ["cam1"], "actuator": {"type": "log"}})
    >>> (cfg.mqtt.port, cfg.result_deadline_s, cfg.actuator.type)
    (1883, 2.0, 'log')
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional, Union

from pydantic import Field, model_validator

from inspector.config import StrictModel
from inspector.mqtt import MqttConfig

_TOPIC_LEVEL = r"^[^/+#]+$"


class LogActuatorConfig(StrictModel):
    """Reject gate that only logs: for dry runs and commissioning."""

    type: Literal["log"] = Field("log", description="Actuator plugin")


class MqttActuatorConfig(StrictModel):
    """Reject gate driven through a PLC gateway that listens on an MQTT topic."""

    type: Literal["mqtt"] = Field(description="Actuator plugin")
    topic: str = Field(description="Topic the PLC gateway reads reject commands from, e.g. plc/line1/reject")
    line_topic: Optional[str] = Field(None, description="Topic for line stop/start commands (None: not sent)")
    qos: int = Field(1, ge=0, le=2, description="QoS of the commands")


class GpioActuatorConfig(StrictModel):
    """Reject gate on a digital output (Raspberry Pi via gpiozero or RPi.GPIO, Jetson via Jetson.GPIO)."""

    type: Literal["gpio"] = Field(description="Actuator plugin")
    pin: int = Field(ge=0, description="BCM pin number of the reject output")
    pulse_ms: float = Field(150.0, gt=0, description="How long the reject output stays on per part")
    stop_pin: Optional[int] = Field(None, ge=0, description="BCM pin held on while the line must stop")
    active_high: bool = Field(True, description="False when the relay board switches on a low output")


ActuatorConfig = Union[LogActuatorConfig, MqttActuatorConfig, GpioActuatorConfig]


class TriggerConfig(StrictModel):
    """Where triggers come from: the controller itself (simulator / demo) or a PLC topic it forwards."""

    rate_hz: float = Field(0.0, ge=0, description="Send this many triggers per second (0: do not generate)")
    count: int = Field(0, ge=0, description="Stop generating after this many parts (0: no limit)")
    part_prefix: str = Field("P", description="Generated part ids are <prefix><number>, e.g. P000001")
    first_number: int = Field(1, ge=0, description="Number of the first generated part")
    input_topic: Optional[str] = Field(
        None,
        description='Topic on which a PLC announces parts ({"part_id": ...} or the bare id); each '
        "announcement is forwarded as a trigger",
    )
    stations: List[str] = Field(
        default_factory=list, description="Stations triggered for each part (empty: all of `stations`)"
    )


class SparkplugConfig(StrictModel):
    """Bridge the stations' results and stats into Sparkplug B for SCADA (Ignition, ...)."""

    enabled: bool = Field(False, description="Run the bridge alongside the controller")
    group_id: str = Field("inspection", pattern=_TOPIC_LEVEL, description="Sparkplug group id")
    edge_node_id: Optional[str] = Field(None, description="Sparkplug edge node id (None: the line name)")
    mqtt: Optional[MqttConfig] = Field(None, description="Broker of the SCADA side (None: the line's broker)")
    state_file: Optional[Path] = Field(
        None,
        description="Where the bridge keeps the bdSeq of its last session, so that a restart goes on with the next "
        "one as Sparkplug B requires. None: sparkplug-<group_id>-<edge node id>.json in $STATE_DIRECTORY (systemd "
        "StateDirectory=), else in $XDG_STATE_HOME/inspector/<line>/sparkplug",
    )


class LineConfig(StrictModel):
    """One production line: its stations, the reject gate and the fail-safe policy."""

    mqtt: MqttConfig = Field(
        default_factory=MqttConfig,
        description="Broker connection and topic prefix, same keys as the station's mqtt section",
    )
    line: str = Field(pattern=_TOPIC_LEVEL, description="Line name, the second topic level")
    controller_id: str = Field(
        "controller", pattern=_TOPIC_LEVEL, description="Topic level under which the controller publishes its own state"
    )
    stations: List[str] = Field(
        default_factory=list, description="Stations whose status is watched (empty: every station seen)"
    )
    result_deadline_s: float = Field(2.0, gt=0, description="A triggered part with no result by then is rejected")
    offline_policy: Literal["reject", "stop"] = Field(
        "reject", description="When a station is offline: reject its parts (reject) or stop the line (stop)"
    )
    review_action: Literal["reject", "accept"] = Field(
        "reject", description="What the gate does with a 'review' verdict (reject: send it to the review bin)"
    )
    dedup_size: int = Field(
        100_000, ge=100, description="How many recent result ids are remembered for dropping duplicates"
    )
    session_expiry_s: int = Field(
        7 * 24 * 3600,
        ge=0,
        description="How long the broker keeps the controller's "
        "session and queued results while it is down; "
        "the session is found by mqtt.client_id (default "
        "inspector-<line>-<controller_id>), keep it stable",
    )
    state_interval_s: float = Field(5.0, gt=0, description="Period of the retained state message")
    actuator: ActuatorConfig = Field(
        default_factory=LogActuatorConfig, discriminator="type", description="Reject gate plugin (log, mqtt, gpio)"
    )
    trigger: TriggerConfig = Field(default_factory=TriggerConfig, description="Trigger generation / forwarding")
    sparkplug: SparkplugConfig = Field(default_factory=SparkplugConfig, description="Sparkplug B bridge")

    @model_validator(mode="after")
    def _triggered_stations_known(self) -> LineConfig:
        unknown = set(self.trigger.stations) - set(self.stations)
        if self.stations and unknown:
            raise ValueError(f"trigger.stations {sorted(unknown)} are not in stations {self.stations}")
        if (self.trigger.rate_hz > 0 or self.trigger.input_topic) and not self.triggered_stations:
            raise ValueError("triggers need a list of stations (set stations or trigger.stations)")
        return self

    @property
    def prefix(self) -> str:
        return self.mqtt.prefix

    @property
    def triggered_stations(self) -> List[str]:
        return list(self.trigger.stations or self.stations)

    @property
    def mqtt_client_id(self) -> str:
        return self.mqtt.client_id or f"inspector-{self.line}-{self.controller_id}"
