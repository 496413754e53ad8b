"""The shipped Node-RED flow in a real Node-RED (tests/peers/nodered_harness.js): imported through the admin API
into an empty user directory, fed by a real station on a real Mosquitto; what its debug nodes and node
statuses show is compared with the station's own results and stats."""

import json
import uuid
from pathlib import Path

import pytest

from inspector.localbroker import free_port
from tests.fixtures_controller import require_mosquitto, result_payload
from tests.fixtures_edge import StationThread, drop_files, station_config, watched_folder_source
from tests.fixtures_peers import NodeProcess

FLOW = Path(__file__).resolve().parents[1] / "deploy" / "monitoring" / "node-red-flow.json"
STATION = "cam1"


def flow_for(broker, station_base: str) -> list:
    """The shipped flow as a user adapts it: the broker node pointed at ``broker``, the inject nodes at one station."""
    nodes = json.loads(FLOW.read_text())
    for node in nodes:
        if node["type"] == "mqtt-broker":
            node["broker"], node["port"] = broker.host, str(broker.port)
        elif node["type"] == "inject":
            node["topic"] = f"{station_base}/cmd"
    return nodes


def _debug(red, name, station_topic=None):
    return [x["msg"] for x in red.events("debug", name=name) if station_topic is None or x["topic"] == station_topic]


def _seen_after_publishing(red, recorder, topic, payload, predicate, what):
    """Publish until the flow shows it (its subscription is live); the readiness signal, instead of a sleep."""
    for _ in range(120):
        recorder.publish(topic, payload)
        try:
            return red.wait_for(predicate, 0.5, what)
        except AssertionError:
            continue
    return red.wait_for(predicate, 1, what)


@pytest.fixture
def parts(synth_root):
    """Two parts of each class of the synthetic data set."""
    return [p for d in sorted(p for p in synth_root.iterdir() if p.is_dir()) for p in sorted(d.glob("*.png"))[:2]]


def test_shipped_flow_in_node_red_counts_what_the_station_counts(
    node_red_node, mqtt_broker, tmp_path, int8_bundle, parts
):
    node = node_red_node
    require_mosquitto(mqtt_broker, "is not the broker a line runs; these tests need Mosquitto")
    line = f"line{uuid.uuid4().hex[:6]}"
    base = f"inspector/{line}/{STATION}"
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps(flow_for(mqtt_broker, base)))
    user_dir = tmp_path / "node-red"
    user_dir.mkdir()
    red = NodeProcess(
        [node, "nodered_harness.js", str(user_dir), str(free_port()), str(flow)], tmp_path / "node-red.log"
    )
    probe = mqtt_broker.subscriber([f"inspector/{line}/{STATION}/#"])
    station = None
    try:
        [deployed] = red.wait_for(lambda r: r.events("deployed"), 60, "the flow deployed")
        assert deployed["status"] == 204, deployed
        # Each subscription is live once a probe message on it comes out of the flow.
        probe_base = f"inspector/{line}/probe"
        _seen_after_publishing(
            red,
            probe,
            f"{probe_base}/result",
            result_payload(line, "probe", "X", "pass"),
            lambda r: _debug(r, "yield per station"),
            "the results subscription",
        )
        _seen_after_publishing(
            red,
            probe,
            f"{probe_base}/status",
            "offline",
            lambda r: _debug(r, "station offline", f"{probe_base}/status"),
            "the status subscription",
        )
        event = json.dumps({"ts": 1.0, "type": "started", "message": "probe"})
        _seen_after_publishing(
            red,
            probe,
            f"{probe_base}/event",
            event,
            lambda r: _debug(r, "station event", f"{probe_base}/event"),
            "the event subscription",
        )

        hot = tmp_path / "hot"
        cfg = station_config(
            mqtt_broker, tmp_path, int8_bundle, watched_folder_source(hot), station=STATION, overrides={"line": line}
        )
        station = StationThread(cfg).start()
        drop_files(parts, hot, [f"{i:03d}_{path.name}" for i, path in enumerate(parts)])
        probe.wait_for(lambda r: len(r.results()) == len(parts), 120, "the station's results")
        probe.wait_for(lambda r: r.on("stats")[-1].json()["frames_inspected"] == len(parts), 30, "the final stats")
        stats = probe.on("stats")[-1].json()
        results = probe.results()

        # Counts and yield per station (function node -> debug sidebar) equal the station's own counts.
        station_key = f"{line}/{STATION}"
        counts = red.wait_for(
            lambda r: [
                m
                for m in _debug(r, "yield per station")
                if m["station"] == station_key and m["pass"] + m["fail"] + m["review"] == len(parts)
            ],
            30,
            "the flow's counts",
        )[-1]
        assert (counts["pass"], counts["fail"], counts["review"]) == (stats["passed"], stats["failed"], stats["review"])
        assert counts["yield_pct"] == pytest.approx(stats["yield_pct"], abs=0.05)
        assert (counts["last_part"], counts["last_score"]) == (results[-1]["part_id"], results[-1]["defect_score"])
        # Failed parts: exactly the station's failed results.
        failed = {r["id"] for r in results if r["verdict"] == "fail"}
        red.wait_for(lambda r: len(_debug(r, "failed part", f"{base}/result")) == len(failed), 30, "the failed parts")
        assert {m["id"] for m in _debug(red, "failed part", f"{base}/result")} == failed
        # The stats summary under the function node names the station, its fps and its camera state.
        red.wait_for(
            lambda r: [
                x
                for x in r.events("status", id="fn_stats")
                if x["status"].get("text", "").startswith(f"{STATION} ")
                and x["status"]["text"].endswith(" ms, running")
                and x["status"]["fill"] == "green"
            ],
            30,
            "the stats summary of a running camera",
        )

        # The inject buttons pause and resume the station; its answers come back through the flow's events.
        for button, word in (("inj_pause", "paused"), ("inj_resume", "resumed")):
            red.send({"inject": button})
            red.wait_for(
                lambda r, word=word: [
                    m
                    for m in _debug(r, "station event", f"{base}/event")
                    if m["type"] == "command_accepted" and m["message"] == word
                ],
                30,
                f"{word} event",
            )
        assert [m.json() for m in probe.on("cmd")] == [{"cmd": "pause"}, {"cmd": "resume"}]

        # The station stops: the flow raises the offline alarm for it.
        station.stop()
        station = None
        red.wait_for(lambda r: _debug(r, "station offline", f"{base}/status"), 30, "the offline alarm")
        red.wait_for(
            lambda r: [m for m in _debug(r, "station event", f"{base}/event") if m["type"] == "stopped"],
            30,
            "the stopped event",
        )
    finally:
        if station is not None:
            station.stop()
        red.send({"quit": True})
        red.wait_for(lambda r: r.events("exit"), 30, "Node-RED to stop")
        red.stop()
        probe.close()

    # The import itself: every node type known, nothing warned about or failed once the server was up.
    logs = [x["line"] for x in red.events("log")]
    after_start = logs[next(i for i, line in enumerate(logs) if "Server now running" in line) :]
    complaints = [line for line in after_start if "[warn]" in line or "[error]" in line]
    assert complaints == [], complaints
    assert not [line for line in logs if "missing" in line.lower() or "unknown" in line.lower()]
    assert red.events("error") == []
