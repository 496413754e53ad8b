"""Telegraf, Grafana and Node-RED files: they parse, and every topic and field they use exists in the
message contract (inspector/protocol/)."""

import json
import re
import typing
from pathlib import Path

import pytest

from inspector.protocol.commands import parse_command
from inspector.protocol.payloads import ControllerState, Event, Result, Stats
from inspector.protocol.topics import StationTopics

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

MONITORING = Path(__file__).resolve().parents[1] / "deploy" / "monitoring"
MODELS = {"stats": Stats, "result": Result, "event": Event, "state": ControllerState}


def _fields(model) -> set:
    return {field.alias or name for name, field in model.model_fields.items()}


def _written_by_telegraf(model, field: str) -> bool:
    """A payload field, or a key of a dict field that Telegraf's JSON parser flattened (reject_reasons_timeout)."""
    dicts = [name for name, f in model.model_fields.items() if typing.get_origin(f.annotation) is dict]
    return field in _fields(model) or any(field.startswith(f"{name}_") for name in dicts)


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
    """measurement name -> payload model, as Telegraf writes them."""
    out = {}
    for consumer in telegraf["inputs"]["mqtt_consumer"]:
        [topic] = consumer["topics"]
        out[consumer["name_override"]] = MODELS[_topic_leaf(topic)]
    return out


def test_telegraf_consumers_follow_the_topic_contract(telegraf):
    consumers = telegraf["inputs"]["mqtt_consumer"]
    assert {_topic_leaf(c["topics"][0]) for c in consumers} == {"stats", "result", "event", "state"}
    for consumer in consumers:
        model = MODELS[_topic_leaf(consumer["topics"][0])]
        fields = _fields(model)
        assert consumer["data_format"] == "json" and consumer["qos"] == 1
        assert consumer["json_time_key"] in fields
        for key in consumer.get("json_string_fields", []) + consumer.get("tag_keys", []):
            assert key in fields, (consumer["name_override"], key)
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
    for query in queries:
        [measurement] = re.findall(r'FROM "(\w+)"', query)
        for field in _influx_fields(query):
            assert _written_by_telegraf(measurements[measurement], field), (query, field)
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for needed in ("yield", "per minute", "latency", "rate", "outbox", "camera"):
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
        "fn_stats": [{"topic": "inspector/line1/cam1/stats", "payload": json.loads(stats_payload(fps=9.5))}],
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
    assert (stats["fps"], stats["camera_state"]) == (9.5, "running")
    assert "9.5 fps" in outs["fn_stats"]["lastStatus"]["text"]
