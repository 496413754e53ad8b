"""The terminal monitor: folding messages into rows, rendering, and `inspector monitor --once` on a broker."""

import argparse
import json

from controller.monitor import CLEAR, LineMonitor, render
from tests.fixtures_controller import (
    AMQTT_UNRELIABLE,
    line_config,
    require_mosquitto,
    result_payload,
    running_controller,
    stats_payload,
)


def _row(text: str, name: str) -> dict:
    """The cells of station or controller ``name`` keyed by its table's header (the nearest header above)."""
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line.split()[:1] == [name])
    header = next(lines[i] for i in range(index, -1, -1) if lines[i].split()[0] in ("STATION", "CONTROLLER"))
    return dict(zip(header.split(), lines[index].split()))


def test_rows_show_status_stats_live_rate_and_last_event():
    mon = LineMonitor(window_s=60)
    mon.handle("inspector/line1/cam1/status", b"online", now=0.0)
    mon.handle("inspector/line1/cam1/stats", stats_payload(fps=12.5, yield_pct=97.25, outbox_depth=3).encode(), now=0.0)
    for i in range(6):
        mon.handle("inspector/line1/cam1/result", result_payload("line1", "cam1", f"P{i}", "pass").encode(), now=i)
    event = {"ts": 0, "type": "camera_lost", "message": "no frame for 5 s"}
    mon.handle("inspector/line1/cam2/event", json.dumps(event).encode(), now=10.0)
    mon.handle("inspector/line1/cam2/status", b"offline", now=10.0)
    text = render(mon, now=60.0, color=False, title="t")
    cam1 = _row(text, "cam1")
    assert (cam1["STATUS"], cam1["FPS"], cam1["/MIN"], cam1["YIELD%"], cam1["OUTBOX"]) == (
        "online",
        "12.5",
        "6",
        "97.2",
        "3",
    )
    assert "camera_lost 50s ago" in text.split("cam2", 1)[1]
    assert "\x1b[" not in text
    # after the window the live rate drops to zero
    assert _row(render(mon, now=200.0, color=False), "cam1")["/MIN"] == "0"


def test_rate_counts_over_the_time_listened_when_shorter_than_the_window():
    """`--once` listens 2 s: 10 results in those 2 s are 300 a minute, not 10."""
    mon = LineMonitor(window_s=60, started=100.0)
    for i in range(10):
        mon.handle(
            "inspector/line1/cam1/result",
            result_payload("line1", "cam1", f"P{i}", "pass").encode(),
            now=100.0 + 0.2 * i,
        )
    assert _row(render(mon, now=102.0, color=False), "cam1")["/MIN"] == "300"


def test_an_offline_station_shows_no_stale_rate_and_an_active_camera_check_is_marked():
    mon = LineMonitor(window_s=60, started=0.0)
    mon.handle("inspector/line1/cam1/status", b"online", now=0.0)
    mon.handle("inspector/line1/cam1/stats", stats_payload(fps=8.0, camera_state="running").encode(), now=0.0)
    mon.handle("inspector/line1/cam1/result", result_payload("line1", "cam1", "P1", "pass").encode(), now=1.0)
    check = {"ts": 0, "type": "camera_check", "message": "out of focus", "details": {"problems": ["focus"]}}
    mon.handle("inspector/line1/cam1/event", json.dumps(check).encode(), now=2.0)
    text = render(mon, now=3.0, color=True)
    assert _row(render(mon, now=3.0, color=False), "cam1")["CAMERA"] == "check"
    assert "\x1b[33m" in text and "\x1b[32m" not in text  # yellow, not green
    ok = {"ts": 0, "type": "camera_ok", "message": "back in tolerance"}
    mon.handle("inspector/line1/cam1/event", json.dumps(ok).encode(), now=4.0)
    assert _row(render(mon, now=5.0, color=False), "cam1")["CAMERA"] == "running"
    assert "\x1b[32m" in render(mon, now=5.0, color=True)
    mon.handle("inspector/line1/cam1/status", b"offline", now=6.0)
    cam1 = _row(render(mon, now=7.0, color=False), "cam1")
    assert (cam1["STATUS"], cam1["CAMERA"], cam1["FPS"], cam1["/MIN"], cam1["PASS"]) == ("offline", "-", "-", "-", "90")


def test_every_line_of_the_screen_fits_80_columns():
    mon = LineMonitor(window_s=60, started=0.0)
    for name in ("cam1", "station-10"):
        mon.handle(f"inspector/line-east/{name}/status", b"online", now=0.0)
        stats = json.loads(stats_payload(fps=123.4, yield_pct=99.95, outbox_depth=100000))
        stats.update(passed=1234567, failed=123456, review=12345, model_version="magnetic-tiles-2026-11 v12")
        mon.handle(f"inspector/line-east/{name}/stats", json.dumps(stats).encode(), now=0.0)
        event = {"ts": 0, "type": "model_reload_failed", "message": "x"}
        mon.handle(f"inspector/line-east/{name}/event", json.dumps(event).encode(), now=1.0)
    state = {
        "ts": 0,
        "uptime_s": 9,
        "state": "stopped",
        "stop_reason": "stations not online: cam2",
        "stations": {"cam1": "online", "cam2": "offline"},
        "parts": 1234567,
        "accepted": 1200000,
        "rejected": 34567,
        "reject_reasons": {"fail": 30000, "timeout": 4000, "station_offline": 567},
        "yield_pct": 97.2,
        "duplicates": 12,
        "late": 3,
        "pending": 2,
    }
    mon.handle("inspector/line-east/controller/state", json.dumps(state).encode(), now=1.0)
    mon.handle("inspector/line-east/controller/status", b"online", now=1.0)
    text = render(mon, now=30.0, color=False)
    assert "controller" in text and "station-10" in text and "timeout:4000" in text
    assert max(len(line) for line in text.splitlines()) <= 80, text


def test_colors_mark_offline_stations_and_lost_cameras_red():
    mon = LineMonitor()
    mon.handle("inspector/line1/cam1/status", b"online", now=0.0)
    mon.handle("inspector/line1/cam1/stats", stats_payload(camera_state="running").encode(), now=0.0)
    assert "\x1b[32m" in render(mon, now=0.0, color=True) and "\x1b[31m" not in render(mon, now=0.0, color=True)
    mon.handle("inspector/line1/cam1/stats", stats_payload(camera_state="lost").encode(), now=1.0)
    assert "\x1b[31m" in render(mon, now=1.0, color=True)
    mon.handle("inspector/line1/cam2/status", b"offline", now=0.0)
    assert render(mon, now=1.0, color=True).count("\x1b[31m") == 2


def test_bad_payloads_are_counted_not_fatal():
    mon = LineMonitor()
    mon.handle("inspector/line1/cam1/stats", b"{not json", now=0.0)
    mon.handle("other/topic", b"x", now=0.0)
    assert mon.bad_messages == 1
    assert "1 message(s) could not be parsed" in render(mon, now=0.0, color=False)


def test_monitor_once_shows_stations_and_the_controller_from_a_real_broker(shared_broker, capsys):
    from controller import monitor_cli

    require_mosquitto(shared_broker, AMQTT_UNRELIABLE)

    cfg = line_config(shared_broker, stations=["cam1"])
    station = shared_broker.subscriber([f"inspector/{cfg.line}/none"])
    try:
        station.publish(f"inspector/{cfg.line}/cam1/status", "online", retain=True)
        station.publish(f"inspector/{cfg.line}/cam1/stats", stats_payload(fps=8.0, camera_state="running"), retain=True)
        with running_controller(cfg) as controller:
            station.publish(f"inspector/{cfg.line}/cam1/result", result_payload(cfg.line, "cam1", "M1", "fail"))
            station.wait_for(lambda r: controller.counts["parts"] == 1, 20, "the decision")
            controller.tick(now=controller.clock() + 3600)  # publish the state now
            parser = argparse.ArgumentParser()
            monitor_cli.add_arguments(parser)
            args = parser.parse_args(
                [
                    "--host",
                    shared_broker.host,
                    "--port",
                    str(shared_broker.port),
                    "--protocol",
                    shared_broker.protocol,
                    "--line",
                    cfg.line,
                    "--once",
                    "--wait",
                    "1.0",
                ]
            )
            assert monitor_cli.run(args) == 0
    finally:
        station.close()
    captured = capsys.readouterr()
    out = captured.out
    assert CLEAR not in out and "connected" not in captured.err  # quiet: the snapshot is the output
    assert f"line {cfg.line}" in out
    station_row = _row(out, "cam1")
    assert station_row["STATUS"] == "online" and station_row["FPS"] == "8.0"
    controller_row = _row(out, "controller")
    assert controller_row["STATE"] == "running" and "rejects fail:1" in out.split("controller", 1)[1]


def test_a_result_naming_another_station_is_counted_apart_not_as_a_verdict():
    mon = LineMonitor()
    mon.handle("inspector/line1/cam2/result", result_payload("line1", "cam1", "P1", "pass").encode(), now=0.0)
    mon.handle("inspector/line1/cam2/result", result_payload("line2", "cam2", "P2", "pass").encode(), now=0.0)
    mon.handle("inspector/line1/cam2/result", result_payload("line1", "cam2", "P3", "fail").encode(), now=0.0)
    node = mon.nodes[("line1", "cam2")]
    assert dict(node.verdicts) == {"fail": 1} and node.sender_mismatches == 2
    assert "line1/cam2: 2 result(s) naming another station or line" in render(mon, now=0.0, color=False)
