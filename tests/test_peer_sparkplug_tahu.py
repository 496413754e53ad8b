"""The Sparkplug B bridge against Eclipse Tahu: a host application on Tahu's JavaScript payload library
(tests/peers/sparkplug_host.js) watches the bridge (``inspector controller --sparkplug-only``, as
inspector-sparkplug.service runs it) in front of a real station on a real Mosquitto, and commands it."""

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.fixtures_controller import require_mosquitto
from tests.fixtures_edge import StationThread, drop_files, station_config, watched_folder_source
from tests.fixtures_peers import NodeProcess

ROOT = Path(__file__).resolve().parents[1]
STATION = "cam1"


def _start_bridge(config: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "controller", "--config", str(config), "--sparkplug-only"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _births(host, kind, device=None):
    return [x for x in host.events(kind) if device is None or x["device"] == device]


def _by_name(message) -> dict:
    return {m["name"]: m for m in message["metrics"]}


@pytest.fixture
def parts(synth_root):
    """One part of each class of the synthetic data set (the station decides each)."""
    return [sorted(d.glob("*.png"))[0] for d in sorted(p for p in synth_root.iterdir() if p.is_dir())]


def test_tahu_host_sees_births_data_deaths_and_commands_the_station(
    tahu_node, mqtt_broker, tmp_path, int8_bundle, parts
):
    node = tahu_node
    require_mosquitto(mqtt_broker, "is not the broker a SCADA site runs; these tests need Mosquitto")
    line, group = f"line{uuid.uuid4().hex[:6]}", "inspection"
    hot = tmp_path / "hot"
    cfg = station_config(
        mqtt_broker, tmp_path, int8_bundle, watched_folder_source(hot), station=STATION, overrides={"line": line}
    )
    station_rec = mqtt_broker.subscriber([f"inspector/{line}/{STATION}/#"])
    station = StationThread(cfg).start()
    station_rec.wait_for(lambda r: r.on("stats"), 60, "the station's first stats")

    host = NodeProcess(
        [node, "sparkplug_host.js", f"mqtt://{mqtt_broker.host}:{mqtt_broker.port}", group, "pytest-scada"],
        tmp_path / "host.log",
    )
    config = tmp_path / "line.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "line": line,
                "mqtt": {"host": mqtt_broker.host, "port": mqtt_broker.port, "protocol": mqtt_broker.protocol},
                "sparkplug": {"group_id": group, "state_file": str(tmp_path / "sparkplug-state.json")},
            }
        )
    )
    bridge = None
    try:
        host.wait_for(lambda h: h.events("ready"), 30, "the host application subscribed")
        bridge = _start_bridge(config, tmp_path / "bridge.log")

        # Births: every metric decodes with a Sparkplug datatype; the device shows the station's own stats.
        host.wait_for(lambda h: _births(h, "DBIRTH", STATION), 60, "NBIRTH and DBIRTH")
        [nbirth] = _births(host, "NBIRTH")
        assert nbirth["node"] == line and nbirth["seq"] == 0
        nmetrics = _by_name(nbirth)
        assert nmetrics["bdSeq"]["type"] == "Int64" and nmetrics["Node Control/Rebirth"]["type"] == "Boolean"
        assert nmetrics["Properties/line"]["value"] == line
        dbirth = _births(host, "DBIRTH", STATION)[0]
        for message in (nbirth, dbirth):
            assert all(m["name"] and m["type"] for m in message["metrics"]), message
            assert len({m["alias"] for m in message["metrics"]}) == len(message["metrics"]), "aliases not unique"
        dmetrics = _by_name(dbirth)
        assert dmetrics["Stats/passed"]["type"] == "UInt64" and dmetrics["Stats/yield_pct"]["type"] == "Double"
        assert (
            dmetrics["Stats/camera_state"]["type"] == "String" and dmetrics["Device Control/Pause"]["type"] == "Boolean"
        )
        aliases = {m["alias"] for m in nbirth["metrics"]} | {m["alias"] for m in dbirth["metrics"]}
        assert None not in aliases and len(aliases) == len(nbirth["metrics"]) + len(dbirth["metrics"])

        # Data: one DDATA per result; the host's view after it equals the station's result payload.
        drop_files(parts, hot)
        station_rec.wait_for(lambda r: len(r.results()) == len(parts), 120, "the station's results")
        for result in station_rec.results():
            view = host.wait_for(
                lambda h, result=result: next(
                    (
                        x["view"]
                        for x in _births(h, "DDATA", STATION)
                        if x["view"].get("Last Result/id") == result["id"]
                    ),
                    None,
                ),
                30,
                f"the DDATA of result {result['seq']}",
            )
            assert {k: view[f"Last Result/{k}"] for k in ("seq", "part_id", "verdict", "top_class")} == {
                k: result[k] for k in ("seq", "part_id", "verdict", "top_class")
            }
            assert view["Last Result/defect_score"] == pytest.approx(result["defect_score"], abs=1e-12)
            assert view["Last Result/capture_ts"] == pytest.approx(result["capture_ts"], abs=1e-6)
        station_rec.wait_for(lambda r: r.on("stats")[-1].json()["frames_inspected"] == len(parts), 30, "final stats")
        stats = station_rec.on("stats")[-1].json()
        host.wait_for(
            lambda h: _births(h, "DDATA", STATION)[-1]["view"]["Stats/frames_inspected"] == len(parts),
            30,
            "the stats after the results",
        )
        view = _births(host, "DDATA", STATION)[-1]["view"]
        assert (view["Stats/passed"], view["Stats/failed"], view["Stats/review"]) == (
            stats["passed"],
            stats["failed"],
            stats["review"],
        )

        # DCMD Device Control/Pause true then false: the station pauses and resumes, and says so in its stats.
        for paused in (True, False):
            host.send(
                {
                    "dcmd": [{"name": "Device Control/Pause", "type": "Boolean", "value": paused}],
                    "node": line,
                    "device": STATION,
                }
            )
            word = "paused" if paused else "resumed"
            station_rec.wait_for(
                lambda r, word=word: [e for e in r.events("command_accepted") if e["message"] == word],
                30,
                f"the station {word}",
            )
            host.wait_for(
                lambda h, paused=paused: any(
                    x["view"].get("Stats/paused") is paused for x in _births(h, "DDATA", STATION)
                ),
                30,
                f"Stats/paused {paused} in a DDATA",
            )
        assert [m.json() for m in station_rec.on("cmd")] == [{"cmd": "pause"}, {"cmd": "resume"}]

        # NCMD Node Control/Rebirth: a new NBIRTH (seq 0) and DBIRTH with the current values.
        last = station_rec.results()[-1]
        host.send({"ncmd": [{"name": "Node Control/Rebirth", "type": "Boolean", "value": True}], "node": line})
        host.wait_for(
            lambda h: len(_births(h, "NBIRTH")) == 2 and len(_births(h, "DBIRTH", STATION)) == 2, 30, "the rebirth"
        )
        assert _births(host, "NBIRTH")[1]["seq"] == 0
        assert _births(host, "DBIRTH", STATION)[1]["view"]["Last Result/id"] == last["id"]

        # The bridge dies without a word (SIGKILL): the broker publishes its NDEATH, with the birth's bdSeq.
        bridge.send_signal(signal.SIGKILL)
        bridge.wait(10)
        [death] = host.wait_for(lambda h: h.events("NDEATH"), 30, "NDEATH")
        assert death["bdSeq"] is not None and death["bdSeq"] == death["birth_bdSeq"], death
        bridge = _start_bridge(config, tmp_path / "bridge.log")
        host.wait_for(
            lambda h: len(_births(h, "NBIRTH")) == 3 and len(_births(h, "DBIRTH", STATION)) == 3,
            60,
            "NBIRTH and DBIRTH after the restart",
        )
        # A new process, a new session: its bdSeq is the dead one's + 1 (kept in sparkplug.state_file).
        assert _by_name(_births(host, "NBIRTH")[2])["bdSeq"]["value"] == (death["bdSeq"] + 1) % 256
        assert host.events("seq_error") == [] and host.events("unborn") == []
        assert host.events("decode_error") == [] and host.events("error") == []
    finally:
        if bridge is not None and bridge.poll() is None:
            bridge.send_signal(signal.SIGTERM)
            bridge.wait(20)
        host.stop()
        station.stop()
        station_rec.close()
