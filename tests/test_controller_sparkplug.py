"""The Sparkplug B bridge against a real broker; every message is decoded with pysparkplug."""

import json
import uuid
from pathlib import Path

import pytest

from tests.fixtures_controller import AMQTT_UNRELIABLE, line_config, require_mosquitto, result_payload, stats_payload

sp = pytest.importorskip("pysparkplug")


def _decode(message, births):
    """Data messages carry aliases only: names come from the latest birth of the same node or device."""
    topic = sp.Topic.from_str(message.topic)
    key = (topic.edge_node_id, topic.device_id)
    kind = topic.message_type
    birth = births.get(key) if kind in (sp.MessageType.NDATA, sp.MessageType.DDATA) else None
    payload = kind.payload.decode(message.payload, birth=birth)
    if kind in (sp.MessageType.NBIRTH, sp.MessageType.DBIRTH):
        births[key] = payload
    return topic, payload


def _metrics(payload) -> dict:
    return {m.name: m.value for m in payload.metrics}


def _of(recorder, message_type, device=None):
    out, births = [], {}
    for m in recorder.messages:
        if m.topic.startswith("spBv1.0/"):
            topic, payload = _decode(m, births)
            if topic.message_type == message_type and (device is None or topic.device_id == device):
                out.append(payload)
    return out


def _sparkplug_config(broker, tmp_path):
    group = f"g{uuid.uuid4().hex[:6]}"
    return line_config(broker, sparkplug={"enabled": True, "group_id": group, "state_file": str(tmp_path / "bd.json")})


def _model_field(model, path: str):
    """The pydantic field at a dotted ``path`` of ``model`` (None when there is none)."""
    import typing

    head, _, rest = path.partition(".")
    field = model.model_fields.get(head)
    if field is None or not rest:
        return field
    nested = [a for a in typing.get_args(field.annotation) if isinstance(a, type)] or [field.annotation]
    return next((f for m in nested if hasattr(m, "model_fields") and (f := _model_field(m, rest))), None)


def test_every_metric_reads_a_field_of_the_payload_it_bridges():
    """A metric naming a field the contract does not have would stay null in SCADA forever."""
    from controller.sparkplug import LINE_METRICS, RESULT_METRICS, STATS_METRICS
    from inspector.protocol.payloads import ControllerState, Result, Stats

    for model, defs in ((Stats, STATS_METRICS), (Result, RESULT_METRICS), (ControllerState, LINE_METRICS)):
        for d in defs:
            assert _model_field(model, d.field) is not None, (model.__name__, d.field)
    assert _model_field(Result, "where.nowhere") is None and _model_field(Result, "nowhere") is None
    names = [d.name for d in STATS_METRICS + RESULT_METRICS + LINE_METRICS]
    assert len(names) == len(set(names))


@pytest.fixture
def bridge_env(shared_broker, tmp_path):
    from controller.sparkplug import SparkplugBridge

    require_mosquitto(shared_broker, AMQTT_UNRELIABLE)
    cfg = _sparkplug_config(shared_broker, tmp_path)
    group = cfg.sparkplug.group_id
    scada = shared_broker.subscriber([f"spBv1.0/{group}/#", f"inspector/{cfg.line}/+/cmd"])
    station = shared_broker.subscriber([f"inspector/{cfg.line}/none"])
    bridge = SparkplugBridge.from_line_config(cfg)
    bridge.start()
    yield cfg, bridge, scada, station
    bridge.stop()
    scada.close()
    station.close()


def test_births_data_commands_and_deaths_decode_with_the_library(bridge_env):
    cfg, bridge, scada, station = bridge_env
    base = f"inspector/{cfg.line}/cam1"
    scada.wait_for(lambda r: _of(r, "NBIRTH"), 20, "NBIRTH")
    [nbirth] = _of(scada, "NBIRTH")
    assert nbirth.seq == 0 and _metrics(nbirth)["bdSeq"] == 0
    assert _metrics(nbirth)["Properties/line"] == cfg.line

    station.publish(f"{base}/status", "online", retain=True)
    station.publish(f"{base}/stats", stats_payload(passed=90, failed=8, yield_pct=90.0), retain=True)
    scada.wait_for(lambda r: _of(r, "DBIRTH", "cam1"), 20, "DBIRTH")
    birth = _metrics(_of(scada, "DBIRTH", "cam1")[0])
    assert (birth["Stats/passed"], birth["Stats/failed"], birth["Stats/yield_pct"]) == (90, 8, 90.0)
    assert birth["Stats/camera_state"] == "running" and "Device Control/Trigger" in birth
    assert "Device Control/Threshold" not in birth  # an engineering command: not SCADA's to send
    assert birth["Last Result/verdict"] is None  # declared in the birth, no value yet

    failed = json.loads(result_payload(cfg.line, "cam1", "P7", "fail"))
    failed["gate"] = ["too dark", "blurred"]
    failed["where"] = {"label": "crack", "x": 40, "y": 72, "box": [24, 56, 32, 32], "strength": 2.5}
    station.publish(f"{base}/result", json.dumps(failed))
    station.publish(f"{base}/stats", stats_payload(passed=90, failed=9, yield_pct=89.1, gated=1), retain=True)
    scada.wait_for(lambda r: len(_of(r, "DDATA", "cam1")) >= 2, 20, "DDATA")
    data = {}
    for payload in _of(scada, "DDATA", "cam1"):
        data.update(_metrics(payload))
    assert (data["Last Result/part_id"], data["Last Result/verdict"]) == ("P7", "fail")
    assert (data["Last Result/gate"], data["Last Result/threshold"]) == ("too dark; blurred", 0.5)
    assert [data[f"Last Result/where/{k}"] for k in ("label", "x", "y", "strength")] == ["crack", 40, 72, 2.5]
    assert (data["Stats/failed"], data["Stats/yield_pct"], data["Stats/gated"]) == (9, 89.1, 1)
    assert "Stats/passed" not in data  # DDATA carries only what changed

    ddata = _of(scada, "DDATA", "cam1")[0]
    birth_payload = _of(scada, "DBIRTH", "cam1")[0]
    raw = next(m.payload for m in scada.messages if "/DDATA/" in m.topic)
    assert sp.DData.decode(raw, birth=birth_payload).metrics == ddata.metrics
    assert all(m.name is None and m.alias is not None for m in sp.DData.decode(raw).metrics)  # aliases only

    # SCADA writes a part id to Device Control/Trigger: the station gets its JSON trigger command
    cmd = sp.DCmd(
        timestamp=sp.get_current_timestamp(),
        metrics=(
            sp.Metric(timestamp=None, name="Device Control/Trigger", datatype=sp.DataType.STRING, value="P8"),
            sp.Metric(timestamp=None, name="Device Control/Threshold", datatype=sp.DataType.DOUBLE, value=1.0),
            sp.Metric(timestamp=None, name="Device Control/Pause", datatype=sp.DataType.BOOLEAN, value=True),
        ),
    )
    scada.publish(f"spBv1.0/{cfg.sparkplug.group_id}/DCMD/{cfg.line}/cam1", cmd.encode(include_dtypes=True))
    scada.wait_for(lambda r: len(r.on("cmd")) == 2, 20, "station commands")
    assert [m.json() for m in scada.on("cmd")] == [{"cmd": "trigger", "part_id": "P8"}, {"cmd": "pause"}]
    assert scada.on("engineering") == []

    seqs = [p.seq for p in _of(scada, "DBIRTH") + _of(scada, "DDATA")]
    assert sorted(seqs) == list(range(1, len(seqs) + 1))  # one sequence after NBIRTH's 0

    station.publish(f"{base}/status", "offline", retain=True)
    scada.wait_for(lambda r: _of(r, "DDEATH", "cam1"), 20, "DDEATH")
    bridge.stop()
    scada.wait_for(lambda r: _of(r, "NDEATH"), 20, "NDEATH")
    assert _of(scada, "NDEATH")[0].bd_seq_metric.value == _metrics(nbirth)["bdSeq"]


def test_rebirth_commands_and_controller_state_as_node_metrics(bridge_env):
    cfg, bridge, scada, station = bridge_env
    base = f"inspector/{cfg.line}/cam2"
    station.publish(f"{base}/stats", stats_payload(), retain=True)
    scada.wait_for(lambda r: _of(r, "DBIRTH", "cam2"), 20, "DBIRTH")

    state = {
        "ts": 1.0,
        "uptime_s": 1.0,
        "state": "running",
        "parts": 10,
        "accepted": 9,
        "rejected": 1,
        "yield_pct": 90.0,
        "pending": 0,
    }
    station.publish(f"inspector/{cfg.line}/controller/state", json.dumps(state), retain=True)
    scada.wait_for(lambda r: _of(r, "NDATA"), 20, "NDATA")
    assert _metrics(_of(scada, "NDATA")[0])["Line/rejected"] == 1

    rebirth = sp.NCmd(
        timestamp=sp.get_current_timestamp(),
        metrics=(sp.Metric(timestamp=None, name="Node Control/Rebirth", datatype=sp.DataType.BOOLEAN, value=True),),
    )
    scada.publish(f"spBv1.0/{cfg.sparkplug.group_id}/NCMD/{cfg.line}", rebirth.encode(include_dtypes=True))
    scada.wait_for(lambda r: len(_of(r, "NBIRTH")) == 2 and len(_of(r, "DBIRTH", "cam2")) == 2, 20, "rebirth")
    assert _metrics(_of(scada, "NBIRTH")[1])["Line/parts"] == 10  # the rebirth carries the current values
    assert "controller" not in {
        sp.Topic.from_str(m.topic).device_id for m in scada.messages if m.topic.startswith("spBv1.0/")
    }


def test_a_result_naming_another_station_is_not_bridged(bridge_env):
    """SCADA must not show cam2's forgery as a result: the topic, not the payload, says who sent it."""
    cfg, bridge, scada, station = bridge_env
    base = f"inspector/{cfg.line}/cam2"
    station.publish(f"{base}/stats", stats_payload(), retain=True)
    scada.wait_for(lambda r: _of(r, "DBIRTH", "cam2"), 20, "DBIRTH")
    station.publish(f"{base}/result", result_payload(cfg.line, "cam1", "Q1", "pass"))  # forged: names cam1
    station.publish(f"{base}/result", result_payload(cfg.line, "cam2", "Q2", "fail"))  # its own, after it
    scada.wait_for(lambda r: _of(r, "DDATA", "cam2"), 20, "DDATA")
    bridged = [_metrics(p).get("Last Result/part_id") for p in _of(scada, "DDATA") + _of(scada, "DBIRTH")]
    assert "Q2" in bridged and "Q1" not in bridged
    assert bridge.sender_mismatches == 1


def test_bd_seq_file_counts_sessions_modulo_256_and_survives_a_damaged_file(tmp_path, caplog):
    from controller.sparkplug import BdSeqFile

    store = BdSeqFile(tmp_path / "state" / "bd.json")
    assert store.last() is None and [store.next() for _ in range(3)] == [0, 1, 2]
    assert BdSeqFile(store.path).last() == 2  # what a restarted bridge reads
    store.save(255)
    assert store.next() == 0
    for damaged in ("{not json", '{"bdSeq": 300}', '{"bdSeq": true}', "[]"):
        store.path.write_text(damaged)
        assert store.next() == 0, damaged
    assert "starting at 0" in caplog.text
    assert [p.name for p in store.path.parent.iterdir()] == ["bd.json"]  # no temporary file left behind


def test_default_state_file_is_in_the_service_state_directory(monkeypatch, tmp_path):
    from controller.sparkplug import default_state_file

    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/inspector/controller")
    assert default_state_file("line1", "inspection", "line1") == Path(
        "/var/lib/inspector/controller/sparkplug-inspection-line1.json"
    )
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert (
        default_state_file("line1", "g", "n") == tmp_path / "inspector" / "line1" / "sparkplug" / "sparkplug-g-n.json"
    )


def test_bd_seq_goes_up_with_every_session_across_reconnects_and_restarts(mqtt_broker, tmp_path):
    """Sparkplug 3.0: each CONNECT's will, and the NBIRTH after it, carry the previous bdSeq + 1, also after a
    restart of the bridge (the value is kept in sparkplug.state_file)."""
    from controller.sparkplug import BdSeqFile, SparkplugBridge

    require_mosquitto(mqtt_broker, AMQTT_UNRELIABLE)
    cfg = _sparkplug_config(mqtt_broker, tmp_path)
    scada = mqtt_broker.subscriber([f"spBv1.0/{cfg.sparkplug.group_id}/#"])
    births = lambda: [_metrics(p)["bdSeq"] for p in _of(scada, "NBIRTH")]  # noqa: E731
    bridge = SparkplugBridge.from_line_config(cfg)
    bridge.start()
    try:
        scada.wait_for(lambda r: births() == [0], 20, "the first NBIRTH")
        mqtt_broker.stop()  # the session ends without an NDEATH of the bridge's own
        mqtt_broker.start_before([scada], [bridge.sink.client, bridge.source.client])
        scada.wait_for(lambda r: births() == [0, 1], 20, "the NBIRTH of the next session")
        assert BdSeqFile(cfg.sparkplug.state_file).last() == 1
    finally:
        bridge.stop()
    deaths = lambda: [d.bd_seq_metric.value for d in _of(scada, "NDEATH")]  # noqa: E731
    scada.wait_for(lambda r: deaths()[-1:] == [1], 20, "the NDEATH of the second session")
    assert set(deaths()) <= {0, 1}  # the broker may also publish the first session's will (bdSeq 0)

    restarted = SparkplugBridge.from_line_config(cfg)  # a new process: only the state file remembers
    restarted.start()
    try:
        scada.wait_for(lambda r: births() == [0, 1, 2], 20, "the NBIRTH after a restart")
    finally:
        restarted.stop()
        scada.close()
