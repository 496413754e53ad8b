"""Home Assistant discovery messages: valid JSON, the keys Home Assistant requires, topics of the contract."""

import json
import re

import pytest

from edge.homeassistant import SENSORS, HomeAssistantConfig, discovery_messages, node_id, removal_messages
from inspector.protocol.payloads import Result, Stats
from inspector.protocol.topics import StationTopics
from tests.fixtures_controller import AMQTT_UNRELIABLE, require_mosquitto

TOPICS = StationTopics("inspector", "line1", "cam-1.a")


def test_every_message_is_valid_json_with_the_required_keys():
    msgs = discovery_messages(TOPICS, model_version="7")
    assert len(msgs) == len(SENSORS)
    for topic, payload in msgs:
        config = json.loads(payload)
        assert re.fullmatch(r"homeassistant/sensor/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config", topic), topic
        for key in (
            "name",
            "unique_id",
            "state_topic",
            "value_template",
            "availability_topic",
            "payload_available",
            "payload_not_available",
            "device",
        ):
            assert key in config, (topic, key)
        assert config["state_topic"] in (TOPICS.stats, TOPICS.result)
        assert (config["availability_topic"], config["payload_available"], config["payload_not_available"]) == (
            TOPICS.status,
            "online",
            "offline",
        )
        assert config["device"]["identifiers"] == [node_id(TOPICS)]
        assert config["device"]["hw_version"] == "model 7"
    unique_ids = [json.loads(p)["unique_id"] for _, p in msgs]
    assert len(set(unique_ids)) == len(unique_ids)


def test_value_and_attribute_templates_read_fields_that_the_payload_models_have():
    fields = {TOPICS.stats: set(Stats.model_fields), TOPICS.result: set(Result.model_fields)}
    attributes = set()
    for _, payload in discovery_messages(TOPICS):
        config = json.loads(payload)
        [field] = re.findall(r"value_json\.(\w+)", config["value_template"])
        assert field in fields[config["state_topic"]], field
        if "json_attributes_template" in config:
            assert config["json_attributes_topic"] in fields
            read = set(re.findall(r"value_json\.(\w+)", config["json_attributes_template"]))
            assert read and read <= fields[config["json_attributes_topic"]], (
                read - fields[config["json_attributes_topic"]]
            )
            attributes |= read
    assert {"part_id", "defect_score", "gate", "where"} <= attributes  # why the gate stopped it, where the defect is


def test_required_dashboard_sensors_are_present():
    objects = {t.split("/")[3] for t, _ in discovery_messages(TOPICS)}
    assert {
        "passed",
        "failed",
        "gated",
        "yield_pct",
        "fps",
        "inference_ms_p50",
        "camera_state",
        "model_version",
    } <= objects


def test_node_id_replaces_characters_home_assistant_forbids():
    assert node_id(TOPICS) == "inspector_line1_cam-1_a"


def test_prefix_and_device_name_come_from_the_config_and_removal_empties_the_same_topics():
    cfg = HomeAssistantConfig(enabled=True, discovery_prefix="ha", device_name="Tile camera", area="Line 1")
    msgs = discovery_messages(TOPICS, cfg)
    assert all(t.startswith("ha/sensor/") for t, _ in msgs)
    device = json.loads(msgs[0][1])["device"]
    assert (device["name"], device["suggested_area"]) == ("Tile camera", "Line 1")
    assert [t for t, _ in removal_messages(TOPICS, cfg)] == [t for t, _ in msgs]
    assert all(p == "" for _, p in removal_messages(TOPICS, cfg))


def test_discovery_messages_go_through_a_real_broker_retained(shared_broker):
    """What Home Assistant sees when it subscribes after the station published: every config, retained."""
    topics = StationTopics("inspector", "ha-line", "cam9")
    require_mosquitto(shared_broker, AMQTT_UNRELIABLE)
    sender = shared_broker.subscriber([f"{topics.base}/none"])
    try:
        for topic, payload in discovery_messages(topics):
            sender.publish(topic, payload, qos=1, retain=True)
        ha = shared_broker.subscriber([f"homeassistant/sensor/{node_id(topics)}/+/config"])
        ha.wait_for(lambda r: len(r.messages) == len(SENSORS), 20, "retained discovery configs")
        assert all(m.retain for m in ha.messages)
        assert {m.json()["unique_id"] for m in ha.messages} == {f"{node_id(topics)}_{s.key}" for s in SENSORS}
        for topic, payload in removal_messages(topics):
            sender.publish(topic, payload, qos=1, retain=True)
        ha.close()
    finally:
        sender.close()


def test_station_publisher_sends_discovery_retained_on_connect(shared_broker, tmp_path):
    """What the station does with ``homeassistant.enabled``: configs retained at connect, readable later."""
    import time
    import uuid

    from edge.config import StationConfig
    from edge.outbox import Outbox
    from edge.publisher import Publisher
    from inspector.mqtt import MqttConfig
    from inspector.protocol.topics import StationTopics

    station_cfg = StationConfig.model_validate(
        {
            "bundle": "m.inspector",
            "source": {"type": "folder", "path": "."},
            "homeassistant": {"enabled": True, "area": "Line 1"},
        }
    )
    topics = StationTopics("inspector", "hatest", f"cam{uuid.uuid4().hex[:6]}")
    expected = dict(discovery_messages(topics, station_cfg.homeassistant, "v7"))
    cfg = MqttConfig(host=shared_broker.host, port=shared_broker.port, protocol=shared_broker.protocol)
    pub = Publisher(
        cfg,
        topics,
        f"ha-{uuid.uuid4().hex[:6]}",
        Outbox(tmp_path / "o.sqlite"),
        on_command=lambda *a: None,
        retained_on_connect=lambda: discovery_messages(topics, station_cfg.homeassistant, "v7"),
    )
    pub.start()
    try:
        deadline = time.monotonic() + 20
        while not pub.connected:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        rec = shared_broker.subscriber([f"homeassistant/sensor/{node_id(topics)}/+/config"])
        rec.wait_for(lambda r: len(r.messages) >= len(expected), what="discovery configs")
        got = {m.topic: m for m in rec.messages}
        assert set(got) == set(expected)
        assert all(m.retain for m in got.values())
        assert all(json.loads(m.payload)["device"]["suggested_area"] == "Line 1" for m in got.values())
        rec.close()
    finally:
        pub.stop()


def test_templates_render_a_real_result_and_stats_with_jinja2():
    """Home Assistant renders these templates with Jinja2: the last verdict's attributes come out as JSON with
    the gate's reasons and where the defect is; every state reads a value."""
    jinja2 = pytest.importorskip("jinja2")
    from tests.fixtures_controller import result_payload, stats_payload

    result = json.loads(result_payload("line1", "cam-1.a", "P9", "fail"))
    result.update(
        gate=["too dark"], where={"label": "crack", "x": 40, "y": 72, "box": [24, 56, 32, 32], "strength": 2.5}
    )
    payloads = {TOPICS.result: result, TOPICS.stats: json.loads(stats_payload(gated=3))}
    env = jinja2.Environment()
    for _, payload in discovery_messages(TOPICS):
        config = json.loads(payload)
        state = env.from_string(config["value_template"]).render(value_json=payloads[config["state_topic"]])
        assert state not in ("", "None"), config["unique_id"]
        if "json_attributes_template" in config:
            rendered = env.from_string(config["json_attributes_template"]).render(value_json=result)
            attributes = json.loads(rendered)
            assert (attributes["part_id"], attributes["gate"], attributes["where"]) == (
                "P9",
                ["too dark"],
                result["where"],
            )
