"""Home Assistant MQTT discovery for a station: retained config messages, so its sensors appear by themselves.

A station that calls :func:`discovery_messages` once per connection (and publishes each ``(topic,
payload)`` with QoS 1 and retain) shows up in Home Assistant as one device with sensors for pass / fail /
review counters, frames the plausibility gate stopped, yield, fps, inference latency, outbox depth, camera
state, model version and the last verdict (with the part, its score, the gate's reasons and where the defect
is as attributes). Every sensor reads the station's existing ``stats`` or ``result`` topic (no extra
traffic) and is *available* only while the station's ``status`` topic says ``online``; the broker's last
will turns them unavailable when the station dies. :func:`removal_messages` deletes them when a station is retired.

Example:
    >>> from inspector.protocol.topics import StationTopics
    >>> msgs = discovery_messages(StationTopics("inspector", "line1", "cam1"))
    >>> msgs[0][0]
    'homeassistant/sensor/inspector_line1_cam1/passed/config'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from pydantic import Field

from inspector import __version__
from inspector.config import StrictModel
from inspector.protocol.enums import Presence
from inspector.protocol.topics import StationTopics


class HomeAssistantConfig(StrictModel):
    """Optional section of a station config: publish Home Assistant discovery messages."""

    enabled: bool = Field(False, description="Publish discovery config messages (retained) on connect")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix")
    device_name: Optional[str] = Field(
        None, description="Device name shown in Home Assistant (None: Inspector <line>/<station>)"
    )
    area: Optional[str] = Field(None, description="Suggested area, e.g. Line 1")


@dataclass(frozen=True)
class _Sensor:
    key: str  # object id and the source field
    name: str
    leaf: str  # station topic leaf the value comes from: stats or result
    unit: Optional[str] = None
    device_class: Optional[str] = None
    state_class: Optional[str] = None
    icon: Optional[str] = None
    diagnostic: bool = False
    field: Optional[str] = None  # payload field when it differs from key

    @property
    def source_field(self) -> str:
        return self.field or self.key


SENSORS: Tuple[_Sensor, ...] = (
    _Sensor("passed", "Passed", "stats", "parts", state_class="total_increasing", icon="mdi:check-circle"),
    _Sensor("failed", "Failed", "stats", "parts", state_class="total_increasing", icon="mdi:close-circle"),
    _Sensor("review", "Review", "stats", "parts", state_class="total_increasing", icon="mdi:eye"),
    _Sensor("gated", "Gated", "stats", "frames", state_class="total_increasing", icon="mdi:filter-remove"),
    _Sensor("yield_pct", "Yield", "stats", "%", state_class="measurement", icon="mdi:percent"),
    _Sensor("fps", "Inspection rate", "stats", "fps", state_class="measurement", icon="mdi:speedometer"),
    _Sensor("inference_ms_p50", "Inference latency p50", "stats", "ms", "duration", "measurement"),
    _Sensor("inference_ms_p95", "Inference latency p95", "stats", "ms", "duration", "measurement"),
    _Sensor(
        "outbox_depth",
        "Outbox depth",
        "stats",
        "results",
        state_class="measurement",
        icon="mdi:tray-full",
        diagnostic=True,
    ),
    _Sensor(
        "frames_dropped",
        "Frames dropped",
        "stats",
        "frames",
        state_class="total_increasing",
        icon="mdi:image-off",
        diagnostic=True,
    ),
    _Sensor("camera_state", "Camera state", "stats", icon="mdi:cctv", diagnostic=True),
    _Sensor("model_version", "Model version", "stats", icon="mdi:brain", diagnostic=True),
    _Sensor("last_verdict", "Last verdict", "result", icon="mdi:clipboard-check", field="verdict"),
)


def node_id(topics: StationTopics) -> str:
    """Discovery node id: only ``[a-zA-Z0-9_-]`` is allowed there, so other characters become ``_``."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", f"{topics.prefix}_{topics.line}_{topics.station}")


def _config(sensor: _Sensor, topics: StationTopics, cfg: HomeAssistantConfig, model_version: str) -> dict:
    node = node_id(topics)
    device = {
        "identifiers": [node],
        "name": cfg.device_name or f"Inspector {topics.line}/{topics.station}",
        "manufacturer": "defect-inspector",
        "model": "inspection station",
        "sw_version": __version__,
    }
    if model_version:
        device["hw_version"] = f"model {model_version}"
    if cfg.area:
        device["suggested_area"] = cfg.area
    payload = {
        "name": sensor.name,
        "unique_id": f"{node}_{sensor.key}",
        "state_topic": getattr(topics, sensor.leaf),
        "value_template": f"{{{{ value_json.{sensor.source_field} }}}}",
        "availability_topic": topics.status,
        "payload_available": Presence.ONLINE.value,
        "payload_not_available": Presence.OFFLINE.value,
        "qos": 1,
        "device": device,
        "origin": {"name": "defect-inspector", "sw_version": __version__},
    }
    if sensor.leaf == "result":
        payload["json_attributes_topic"] = topics.result
        attributes = ("part_id", "defect_score", "top_class", "captured_at", "gate", "where")
        pairs = ", ".join(f"'{name}': value_json.{name}" for name in attributes)
        payload["json_attributes_template"] = f"{{{{ {{{pairs}}} | tojson }}}}"
    for key, value in (
        ("unit_of_measurement", sensor.unit),
        ("device_class", sensor.device_class),
        ("state_class", sensor.state_class),
        ("icon", sensor.icon),
    ):
        if value is not None:
            payload[key] = value
    if sensor.diagnostic:
        payload["entity_category"] = "diagnostic"
    return payload


def _topic(sensor: _Sensor, topics: StationTopics, cfg: HomeAssistantConfig) -> str:
    return f"{cfg.discovery_prefix}/sensor/{node_id(topics)}/{sensor.key}/config"


def discovery_messages(
    topics: StationTopics, cfg: Optional[HomeAssistantConfig] = None, model_version: str = ""
) -> List[Tuple[str, str]]:
    """``(topic, payload)`` pairs to publish retained with QoS 1 after every (re)connection."""
    cfg = cfg or HomeAssistantConfig()
    return [
        (_topic(s, topics, cfg), json.dumps(_config(s, topics, cfg, model_version), sort_keys=True)) for s in SENSORS
    ]


def removal_messages(topics: StationTopics, cfg: Optional[HomeAssistantConfig] = None) -> List[Tuple[str, str]]:
    """Empty retained payloads on the same topics: Home Assistant deletes the entities."""
    cfg = cfg or HomeAssistantConfig()
    return [(_topic(s, topics, cfg), "") for s in SENSORS]
