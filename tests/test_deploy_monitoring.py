"""Telegraf, Grafana and Node-RED files: they parse, and every topic and field they use exists in the
message contract (inspector/protocol/)."""

import fnmatch
import json
import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from inspector.protocol.commands import parse_command
from inspector.protocol.enums import DecisionReason
from inspector.protocol.payloads import ControllerState, Event, Result, Stats
from inspector.protocol.topics import StationTopics

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

MONITORING = Path(__file__).resolve().parents[1] / "deploy" / "monitoring"
MODELS = {"stats": Stats, "result": Result, "event": Event, "state": ControllerState}


# Keys of dict fields that a dashboard may name, and the values they can take.
DICT_KEYS = {"reject_reasons": {reason.value for reason in DecisionReason}}


def _fields(model) -> set:
    return {field.alias or name for name, field in model.model_fields.items()}


def _unwrap(annotation):
    """``Optional[X]`` -> ``X``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) is typing.Union and len(args) == 1 else annotation


def _flattened(model, prefix: str = "") -> dict:
    """What Telegraf's JSON parser writes for ``model``: regex of a field name -> whether it is a string.

    Nested objects and lists are flattened with ``_`` (where_x, gate_0, reject_reasons_timeout); strings,
    enums and booleans are written only when json_string_fields or tag_keys name them.
    """
    out = {}
    for name, field in model.model_fields.items():
        key, annotation = prefix + (field.alias or name), _unwrap(field.annotation)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.update(_flattened(annotation, key + "_"))
        elif origin in (list, dict):
            item = _unwrap(typing.get_args(annotation)[-1])
            is_string = isinstance(item, type) and issubclass(item, (str, bool))
            out[key + (r"_\d+" if origin is list else r"_\w+")] = is_string
        else:
            out[key] = isinstance(annotation, type) and issubclass(annotation, (str, bool))
    return out


def _written_by_telegraf(model, field: str) -> bool:
    """A field Telegraf writes for ``model``; a dict key must be one the payload can hold (reject_reasons_timeout)."""
    for name, keys in DICT_KEYS.items():
        if field.startswith(name + "_") and name in _fields(model):
            return field[len(name) + 1 :] in keys
    return any(re.fullmatch(pattern, field) for pattern in _flattened(model))


def _is_string(model, field: str) -> bool:
    return any(is_string for pattern, is_string in _flattened(model).items() if re.fullmatch(pattern, field))


def test_the_flattening_follows_the_payload_models():
    """The helper itself: nested, list and dict fields of the real models, and names that do not exist."""
    assert _written_by_telegraf(Result, "where_x") and _written_by_telegraf(Result, "where_box_3")
    assert _written_by_telegraf(Result, "gate_0") and _is_string(Result, "gate_0") and _is_string(Result, "where_label")
    assert not _is_string(Result, "where_strength") and _is_string(Stats, "camera_state")
    assert _written_by_telegraf(ControllerState, "reject_reasons_duplicate_part_id")
    for missing in ("where_z", "gated", "reject_reasons_tired", "where"):
        assert not _written_by_telegraf(Result if "reject" not in missing else ControllerState, missing), missing


def _topic_leaf(topic: str) -> str:
    parsed = StationTopics.parse(topic)
    assert parsed is not None and parsed[0] == "inspector", f"{topic} does not follow <prefix>/<line>/<station>/<leaf>"
    assert parsed[1] == "+" and parsed[2] == "+", topic
    assert parsed[3] in MODELS or parsed[3] == "status", topic
    return parsed[3]


@pytest.fixture(scope="module")
def telegraf():
    return tomllib.loads((MONITORING / "telegraf.conf").read_text())


def _measurements(telegraf) -> dict:
    """measurement name -> (payload model, the consumer that writes it)."""
    out = {}
    for consumer in telegraf["inputs"]["mqtt_consumer"]:
        [topic] = consumer["topics"]
        out[consumer["name_override"]] = (MODELS[_topic_leaf(topic)], consumer)
    return out


def _kept_as_string(consumer, field: str) -> bool:
    globs = consumer.get("json_string_fields", []) + consumer.get("tag_keys", [])
    return any(fnmatch.fnmatchcase(field, glob) for glob in globs)


def test_telegraf_consumers_follow_the_topic_contract(telegraf):
    consumers = telegraf["inputs"]["mqtt_consumer"]
    assert {_topic_leaf(c["topics"][0]) for c in consumers} == {"stats", "result", "event", "state"}
    for consumer in consumers:
        model = MODELS[_topic_leaf(consumer["topics"][0])]
        fields = _fields(model)
        assert consumer["data_format"] == "json" and consumer["qos"] == 1
        assert consumer["json_time_key"] in fields
        for key in consumer.get("tag_keys", []):
            assert key in fields, (consumer["name_override"], key)  # tags are read from the top level only
        names = [re.sub(r"\\d\+", "0", re.sub(r"\\w\+", "x", pattern)) for pattern in _flattened(model)]
        for glob in consumer.get("json_string_fields", []):
            matched = [name for name in names if fnmatch.fnmatchcase(name, glob)]
            assert matched and all(_is_string(model, name) for name in matched), (consumer["name_override"], glob)
        [parsing] = consumer["topic_parsing"]
        assert parsing["topic"] == consumer["topics"][0] and parsing["tags"].split("/")[1] == "line"
        assert consumer["username"] == "dashboard"  # the read-only broker user
    assert "influxdb" in telegraf["outputs"]


def _influx_fields(query: str) -> set:
    inner = re.findall(r'(?:last|mean|max|count|min|sum)\("(\w+)"\)', query)
    selected = re.findall(r'SELECT "(\w+)"', query)
    return set(inner) | set(selected)


def test_grafana_queries_use_measurements_and_fields_that_telegraf_writes(telegraf):
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    measurements = _measurements(telegraf)
    queries = [t["query"] for p in dashboard["panels"] for t in p["targets"]]
    queries += [a["query"] for a in dashboard["annotations"]["list"]]
    assert len(queries) >= 8
    used = set()
    for query in queries:
        [measurement] = re.findall(r'FROM "(\w+)"', query)
        model, consumer = measurements[measurement]
        for field in _influx_fields(query):
            assert _written_by_telegraf(model, field), (query, field)
            if _is_string(model, field):  # Telegraf drops a string it was not told to keep
                assert _kept_as_string(consumer, field), (measurement, field)
            used.add(field)
    # What the contract added for dashboards is shown: the gate, where the defect is, the dropped results.
    assert {"gated", "where_x", "where_label", "duplicates", "sender_mismatches"} <= used
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for needed in ("yield", "per minute", "latency", "rate", "outbox", "camera", "gated", "defect location"):
        assert needed in titles, needed
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"line", "station"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_node_red_flow_is_wired_and_speaks_the_contract():
    nodes = json.loads((MONITORING / "node-red-flow.json").read_text())
    by_id = {n["id"]: n for n in nodes}
    assert len(by_id) == len(nodes)
    for node in nodes:
        for output in node.get("wires", []):
            for target in output:
                assert target in by_id, (node["id"], target)
        if node["type"] in ("mqtt in", "mqtt out"):
            assert by_id[node["broker"]]["type"] == "mqtt-broker"
        if node.get("z"):
            assert by_id[node["z"]]["type"] == "tab"
    inputs = [n for n in nodes if n["type"] == "mqtt in"]
    assert {_topic_leaf(n["topic"]) for n in inputs} >= {"result", "stats", "event", "status"}
    for node in nodes:
        if node["type"] == "function":
            topic = next(n["topic"] for n in inputs if node["id"] in n["wires"][0])
            fields = _fields(MODELS[topic.rsplit("/", 1)[1]])
            used = set(re.findall(r"msg\.payload\.(\w+)", node["func"])) | set(re.findall(r"\bs\.(\w+)", node["func"]))
            assert used and used <= fields, (node["name"], used - fields)
        if node["type"] == "switch" and node["property"].startswith("payload."):  # e.g. payload.verdict
            topic = next(n["topic"] for n in inputs if node["id"] in n["wires"][0])
            assert node["property"].split(".", 1)[1] in _fields(MODELS[topic.rsplit("/", 1)[1]]), node["property"]
    commands = [n for n in nodes if n["type"] == "inject"]
    assert commands
    for node in commands:
        assert StationTopics.parse(node["topic"])[3] == "cmd"
        parse_command(node["payload"])  # the station would accept it
        assert any(by_id[t]["type"] == "mqtt out" for t in node["wires"][0])


def test_node_red_functions_run_on_real_payloads(tmp_path):
    """Each function node's code, run by Node.js on station payloads, with Node-RED's context and status."""
    import shutil
    import subprocess

    from tests.fixtures_controller import result_payload, stats_payload

    node_bin = shutil.which("node")
    if node_bin is None:
        pytest.skip("node.js not installed")
    nodes = {n["id"]: n for n in json.loads((MONITORING / "node-red-flow.json").read_text())}
    results = [json.loads(result_payload("line1", "cam1", f"P{i}", v)) for i, v in enumerate(["pass", "fail", "pass"])]
    results.append(results[0])  # a redelivered result is not counted twice
    harness = """
const store = {};
const context = {get: k => store[k], set: (k, v) => { store[k] = v; }};
let lastStatus = null;
const node = {status: s => { lastStatus = s; }};
const run = new Function('msg', 'context', 'node', BODY);
const outputs = INPUTS.map(msg => run(msg, context, node));
console.log(JSON.stringify({outputs, lastStatus}));
"""
    cases = {
        "fn_counts": [{"topic": "inspector/line1/cam1/result", "payload": r} for r in results],
        "fn_stats": [{"topic": "inspector/line1/cam1/stats", "payload": json.loads(stats_payload(fps=9.5, gated=3))}],
    }
    outs = {}
    for node_id, inputs in cases.items():
        script = harness.replace("BODY", json.dumps(nodes[node_id]["func"])).replace("INPUTS", json.dumps(inputs))
        path = tmp_path / f"{node_id}.js"
        path.write_text(script)
        run = subprocess.run([node_bin, str(path)], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        outs[node_id] = json.loads(run.stdout)
    counts = outs["fn_counts"]["outputs"]
    assert counts[-1] is None  # the repeated id
    assert counts[2]["payload"] == {
        "station": "line1/cam1",
        "pass": 2,
        "fail": 1,
        "review": 0,
        "yield_pct": 66.7,
        "last_part": "P2",
        "last_score": 0.04,
    }
    stats = outs["fn_stats"]["outputs"][0]["payload"]
    assert (stats["fps"], stats["camera_state"], stats["gated"]) == (9.5, "running", 3)
    assert "9.5 fps" in outs["fn_stats"]["lastStatus"]["text"]
