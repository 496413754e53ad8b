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


def test_rows_show_status_stats_live_rate_and_last_event():
    mon = LineMonitor(window_s=60)
    mon.handle("inspector/line1/cam1/status", b"online", now=0.0)
    mon.handle("inspector/line1/cam1/stats", stats_payload(fps=12.5, yield_pct=97.25, outbox_depth=3).encode(), now=0.0)
    for i in range(6):
        mon.handle("inspector/line1/cam1/result", result_payload("line1", "cam1", f"P{i}", "pass").encode(), now=i)
    event = {"ts": 0, "type": "camera_lost", "message": "no frame for 5 s"}
    mon.handle("inspector/line1/cam2/event", json.dumps(event).encode(), now=10.0)
    mon.handle("inspector/line1/cam2/status", b"offline", now=10.0)
    text = render(mon, now=40.0, color=False, title="t")
    lines = text.splitlines()
    header = lines[2].split()
    cam1 = dict(zip(header, lines[3].split()))
    assert (cam1["STATUS"], cam1["FPS"], cam1["RES/MIN"], cam1["YIELD%"], cam1["OUTBOX"]) == (
        "online",
        "12.5",
        "6",
        "97.2",
        "3",
    )
    assert "offline" in lines[4] and "camera_lost 30s ago" in lines[4]
    assert "\x1b[" not in text
    # after the window the live rate drops to zero
    assert dict(zip(header, render(mon, now=200.0, color=False).splitlines()[3].split()))["RES/MIN"] == "0"


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
    out = capsys.readouterr().out
    assert CLEAR not in out
    station_row = next(line for line in out.splitlines() if line.startswith(cfg.line) and " cam1 " in line)
    assert "online" in station_row and " 8.0 " in station_row
    controller_row = next(line for line in out.splitlines() if " controller " in line)
    assert "running" in controller_row and "fail:1" in controller_row


def test_a_result_naming_another_station_is_counted_apart_not_as_a_verdict():
    mon = LineMonitor()
    mon.handle("inspector/line1/cam2/result", result_payload("line1", "cam1", "P1", "pass").encode(), now=0.0)
    mon.handle("inspector/line1/cam2/result", result_payload("line2", "cam2", "P2", "pass").encode(), now=0.0)
    mon.handle("inspector/line1/cam2/result", result_payload("line1", "cam2", "P3", "fail").encode(), now=0.0)
    node = mon.nodes[("line1", "cam2")]
    assert dict(node.verdicts) == {"fail": 1} and node.sender_mismatches == 2
    assert "line1/cam2: 2 result(s) naming another station or line" in render(mon, now=0.0, color=False)
