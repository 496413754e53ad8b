"""The line controller against a real broker, with station-like results published from a paho client."""

import json
import uuid

import pytest

from tests.fixtures_controller import decisions, line_config, result_payload, running_controller


def _plc_actuator(line):
    return {"type": "mqtt", "topic": f"plc/{line}/reject", "line_topic": f"plc/{line}/line"}


def test_rejects_failed_parts_through_the_gate_and_accepts_passed_ones(shared_broker, recorder_factory):
    cfg = line_config(shared_broker)
    cfg = line_config(shared_broker, line=cfg.line, actuator=_plc_actuator(cfg.line))
    watch = recorder_factory([f"inspector/{cfg.line}/controller/#", f"plc/{cfg.line}/#"])
    station = recorder_factory([f"inspector/{cfg.line}/cam1/cmd"])
    with running_controller(cfg):
        station.publish(f"inspector/{cfg.line}/cam1/result", result_payload(cfg.line, "cam1", "A1", "pass"))
        station.publish(f"inspector/{cfg.line}/cam1/result", result_payload(cfg.line, "cam1", "A2", "fail"))
        watch.wait_for(lambda r: len(decisions(r)) == 2, 20, "two decisions")
        watch.wait_for(lambda r: r.on("reject"), 20, "the reject command")
    by_part = {d["part_id"]: d for d in decisions(watch)}
    assert (by_part["A1"]["action"], by_part["A2"]["action"]) == ("accept", "reject")
    assert by_part["A2"]["reason"] == "fail" and by_part["A2"]["verdicts"] == {"cam1": "fail"}
    rejects = [m.json() for m in watch.on("reject")]
    assert [(r["action"], r["part_id"], r["reason"]) for r in rejects] == [("reject", "A2", "fail")]
    # a clean stop publishes offline itself (the broker sends the last will only for a lost connection)
    watch.wait_for(lambda r: r.on("status") and r.on("status")[-1].text == "offline", 20, "offline status")


def test_triggered_part_whose_result_never_comes_is_rejected(shared_broker, recorder_factory):
    cfg = line_config(shared_broker, stations=["cam1"], result_deadline_s=0.5)
    watch = recorder_factory([f"inspector/{cfg.line}/controller/decision"])
    station = recorder_factory([f"inspector/{cfg.line}/cam1/cmd"])
    with running_controller(cfg) as controller:
        assert controller.trigger("B1") is None
        assert controller.trigger("B2") is None
        station.wait_for(lambda r: len(r.on("cmd")) == 2, 20, "two triggers")
        # the station answers B1 only; B2 is lost
        station.publish(f"inspector/{cfg.line}/cam1/result", result_payload(cfg.line, "cam1", "B1", "pass"))
        watch.wait_for(lambda r: len(decisions(r)) == 2, 20, "two decisions")
    assert [m.json() for m in station.on("cmd")] == [
        {"cmd": "trigger", "part_id": "B1"},
        {"cmd": "trigger", "part_id": "B2"},
    ]
    by_part = {d["part_id"]: d for d in decisions(watch)}
    assert (by_part["B1"]["action"], by_part["B1"]["reason"]) == ("accept", "pass")
    assert (by_part["B2"]["action"], by_part["B2"]["reason"], by_part["B2"]["missing"]) == (
        "reject",
        "timeout",
        ["cam1"],
    )


def test_duplicate_result_is_dropped(shared_broker, recorder_factory):
    cfg = line_config(shared_broker)
    watch = recorder_factory([f"inspector/{cfg.line}/controller/decision"])
    station = recorder_factory([f"inspector/{cfg.line}/cam1/cmd"])
    payload = result_payload(cfg.line, "cam1", "C1", "fail", rid=uuid.uuid4().hex)
    with running_controller(cfg) as controller:
        station.publish(f"inspector/{cfg.line}/cam1/result", payload)
        station.publish(f"inspector/{cfg.line}/cam1/result", payload)  # redelivery of the same result
        station.publish(f"inspector/{cfg.line}/cam1/result", result_payload(cfg.line, "cam1", "C2", "pass"))
        watch.wait_for(lambda r: len(decisions(r)) == 2, 20, "decisions for C1 and C2")
        watch.wait_for(lambda r: controller.counts["duplicates"] == 1, 20, "the duplicate to be counted")
        state = controller.snapshot()
    assert sorted(d["part_id"] for d in decisions(watch)) == ["C1", "C2"]
    assert (state.parts, state.rejected, state.results, state.duplicates) == (2, 1, 2, 1)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_results_published_while_the_controller_was_down_are_delivered(shared_broker, recorder_factory, protocol):
    cfg = line_config(
        shared_broker, mqtt={"host": shared_broker.host, "port": shared_broker.port, "protocol": protocol}
    )
    with running_controller(cfg):
        pass  # first run: the broker now holds the controller's persistent session and subscriptions
    station = recorder_factory([f"inspector/{cfg.line}/cam1/cmd"])
    parts = {"D1": "pass", "D2": "fail", "D3": "pass"}
    for part_id, verdict in parts.items():
        station.publish(f"inspector/{cfg.line}/cam1/result", result_payload(cfg.line, "cam1", part_id, verdict))
    seen = []
    with running_controller(cfg) as controller:
        controller.add_listener(seen.append)
        station.wait_for(lambda r: len(controller.decisions) == 3, 20, "the queued results")
        assert controller.client.session_present
    assert {d.part_id: d.action for d in controller.decisions} == {"D1": "accept", "D2": "reject", "D3": "accept"}


def test_generated_triggers_against_a_responding_station(shared_broker, recorder_factory):
    """The simulator side: triggers at a rate, a station answering every trigger, the run ends when done."""
    cfg = line_config(
        shared_broker, stations=["cam1"], result_deadline_s=5.0, trigger={"rate_hz": 50, "count": 6, "part_prefix": "S"}
    )
    station = recorder_factory([f"inspector/{cfg.line}/cam1/cmd"])
    station.publish(f"inspector/{cfg.line}/cam1/status", "online", retain=True)

    def answer(client, userdata, msg):
        part_id = json.loads(msg.payload)["part_id"]
        verdict = "fail" if part_id.endswith(("3", "6")) else "pass"
        client.publish(f"inspector/{cfg.line}/cam1/result", result_payload(cfg.line, "cam1", part_id, verdict), qos=1)

    station.client.message_callback_add(f"inspector/{cfg.line}/cam1/cmd", answer)
    from controller.controller import LineController

    controller = LineController(cfg)
    controller.start()
    try:
        controller.run(until_done=True, duration=30)
    finally:
        controller.stop()
    state = controller.snapshot()
    assert (state.triggers_sent, state.parts, state.accepted, state.rejected) == (6, 6, 4, 2)
    assert {d.part_id for d in controller.decisions if d.action == "reject"} == {"S000003", "S000006"}
    assert state.pending == 0 and state.stations == {"cam1": "online"}


def test_offline_station_parts_are_rejected_by_the_reject_policy(shared_broker, recorder_factory):
    cfg = line_config(shared_broker, stations=["cam1"], result_deadline_s=30, offline_policy="reject")
    station = recorder_factory([f"inspector/{cfg.line}/cam1/cmd"])
    watch = recorder_factory([f"inspector/{cfg.line}/controller/decision"])
    with running_controller(cfg) as controller:
        controller.trigger("E1")
        station.wait_for(lambda r: r.on("cmd"), 20, "the trigger")
        station.publish(f"inspector/{cfg.line}/cam1/status", "offline", retain=True)  # as its last will would
        watch.wait_for(lambda r: len(decisions(r)) == 1, 20, "the waiting part rejected")
        refused = controller.trigger("E2")
    assert (decisions(watch)[0]["part_id"], decisions(watch)[0]["reason"]) == ("E1", "station_offline")
    assert (refused.action, refused.reason) == ("reject", "station_offline")
    assert len(station.on("cmd")) == 1  # no trigger is sent to an offline station


def test_stop_policy_stops_the_line_until_every_station_is_online(shared_broker, recorder_factory):
    cfg = line_config(shared_broker, stations=["cam1"], offline_policy="stop")
    cfg = line_config(
        shared_broker, line=cfg.line, stations=["cam1"], offline_policy="stop", actuator=_plc_actuator(cfg.line)
    )
    plc = recorder_factory([f"plc/{cfg.line}/line", f"inspector/{cfg.line}/controller/state"])

    def actions(recorder):  # QoS 1 may deliver a command twice: collapse repeats
        out = [m.json()["action"] for m in recorder.on("line")]
        return [a for i, a in enumerate(out) if i == 0 or out[i - 1] != a]

    station = recorder_factory([f"inspector/{cfg.line}/cam1/cmd"])
    with running_controller(cfg) as controller:
        assert controller.state == "stopped"  # cam1 never reported: the line does not start
        refused = controller.trigger("F1")
        station.publish(f"inspector/{cfg.line}/cam1/status", "online", retain=True)
        plc.wait_for(lambda r: actions(r) == ["stop", "run"], 20, "run command")
        station.publish(f"inspector/{cfg.line}/cam1/status", "offline", retain=True)
        plc.wait_for(lambda r: actions(r) == ["stop", "run", "stop"], 20, "stop")
        plc.wait_for(lambda r: r.on("state") and r.on("state")[-1].json()["state"] == "stopped", 20, "state")
    assert (refused.action, refused.reason) == ("reject", "line_stopped")
    assert "cam1" in plc.on("state")[-1].json()["stop_reason"]


def test_part_announcements_from_a_plc_topic_become_triggers(shared_broker, recorder_factory):
    cfg = line_config(shared_broker)
    cfg = line_config(
        shared_broker, line=cfg.line, stations=["cam1", "cam2"], trigger={"input_topic": f"plc/{cfg.line}/part"}
    )
    stations = recorder_factory([f"inspector/{cfg.line}/+/cmd"])
    with running_controller(cfg) as controller:
        stations.publish(f"plc/{cfg.line}/part", json.dumps({"part_id": "G1"}))
        stations.publish(f"plc/{cfg.line}/part", "G2")
        stations.wait_for(lambda r: len(r.on("cmd")) == 4, 20, "triggers to both stations")
        pending = controller.tracker.pending
    assert sorted((m.topic.split("/")[2], m.json()["part_id"]) for m in stations.on("cmd")) == [
        ("cam1", "G1"),
        ("cam1", "G2"),
        ("cam2", "G1"),
        ("cam2", "G2"),
    ]
    assert pending == 2


def test_a_station_naming_another_station_in_its_payload_decides_nothing_and_raises_an_alarm(
    shared_broker, recorder_factory
):
    """The topic says who sent a result: cam2 publishing on its own topic as "cam1" (or as another line)
    must not decide cam1's parts, whether the forgery comes before or after cam1's real result."""
    cfg = line_config(shared_broker)
    line = cfg.line
    cfg = line_config(
        shared_broker, line=line, stations=["cam1", "cam2"], result_deadline_s=30, trigger={"stations": ["cam1"]}
    )
    watch = recorder_factory([f"inspector/{line}/controller/decision", f"inspector/{line}/controller/event"])
    recorder_factory([f"inspector/{line}/+/cmd"])
    cam1, cam2 = f"inspector/{line}/cam1/result", f"inspector/{line}/cam2/result"
    with running_controller(cfg) as controller:
        controller.trigger("H1")
        controller.trigger("H2")
        watch.publish(cam2, result_payload(line, "cam1", "H1", "pass"))  # forged before the real result
        watch.publish(cam2, result_payload("other-line", "cam2", "H2", "pass"))  # forged line
        watch.publish(cam1, result_payload(line, "cam1", "H1", "fail"))
        watch.publish(cam2, result_payload(line, "cam1", "H1", "pass"))  # forged after the real result
        watch.publish(cam2, result_payload(line, "cam1", "H9", "pass"))  # a part nobody triggered
        watch.publish(cam1, result_payload(line, "cam1", "H2", "fail"))
        watch.wait_for(
            lambda r: len(decisions(r)) == 2 and len(r.on("event")) == 4, 20, "two decisions and four alarms"
        )
        state = controller.snapshot()
        pending = controller.tracker.pending
    by_part = {d["part_id"]: d for d in decisions(watch)}
    assert sorted(by_part) == ["H1", "H2"]
    assert [(by_part[p]["action"], by_part[p]["reason"], by_part[p]["verdicts"]) for p in ("H1", "H2")] == [
        ("reject", "fail", {"cam1": "fail"})
    ] * 2
    alarms = [m.json() for m in watch.on("event")]
    assert {a["type"] for a in alarms} == {"sender_mismatch"}
    assert sorted(
        (a["details"]["topic_station"], a["details"]["payload_station"], a["details"]["payload_line"]) for a in alarms
    ) == sorted([("cam2", "cam1", line)] * 3 + [("cam2", "cam2", "other-line")])
    assert (state.sender_mismatches, state.parts, state.results, pending) == (4, 2, 2, 0)


def test_a_reused_part_id_ends_in_a_reject_decision_not_in_silence(shared_broker, recorder_factory):
    """Every announced part ends in a decision: an id announced again (while pending, after its decision, or
    after an early result) is rejected with reason duplicate_part_id, published and sent to the gate."""
    cfg = line_config(shared_broker)
    line = cfg.line
    cfg = line_config(
        shared_broker,
        line=line,
        stations=["cam1"],
        result_deadline_s=30,
        trigger={"input_topic": f"plc/{line}/part"},
        actuator=_plc_actuator(line),
    )
    watch = recorder_factory([f"inspector/{line}/controller/decision", f"plc/{line}/reject"])
    station = recorder_factory([f"inspector/{line}/cam1/cmd"])
    announce = f"plc/{line}/part"
    result = f"inspector/{line}/cam1/result"
    with running_controller(cfg) as controller:
        station.publish(announce, "J1")
        station.wait_for(lambda r: len(r.on("cmd")) == 1, 20, "the trigger of J1")
        station.publish(announce, "J1")  # announced again while J1 waits for its result
        watch.wait_for(lambda r: len(decisions(r)) == 2, 20, "J1 decided twice")
        station.publish(result, result_payload(line, "cam1", "J2", "pass"))  # an early (operator) trigger's result
        watch.wait_for(lambda r: len(decisions(r)) == 3, 20, "J2 decided from its early result")
        station.publish(announce, json.dumps({"part_id": "J2"}))
        station.publish(announce, "J3")
        station.wait_for(lambda r: len(r.on("cmd")) == 2, 20, "the trigger of J3")
        station.publish(result, result_payload(line, "cam1", "J3", "pass"))
        watch.wait_for(lambda r: len(decisions(r)) == 5, 20, "J2 refused, J3 decided")
        station.publish(announce, "J3")  # the PLC announces a decided id again
        watch.wait_for(lambda r: len(decisions(r)) == 6 and len(r.on("reject")) == 4, 20, "every decision")
        state = controller.snapshot()
    got = [(d["part_id"], d["action"], d["reason"]) for d in decisions(watch)]
    dup = ("reject", "duplicate_part_id")
    assert got == [
        ("J1", *dup),
        ("J1", *dup),
        ("J2", "accept", "pass"),
        ("J2", *dup),
        ("J3", "accept", "pass"),
        ("J3", *dup),
    ]
    assert [(r["part_id"], r["reason"]) for r in (m.json() for m in watch.on("reject"))] == [
        ("J1", "duplicate_part_id"),
        ("J1", "duplicate_part_id"),
        ("J2", "duplicate_part_id"),
        ("J3", "duplicate_part_id"),
    ]
    assert [m.json()["part_id"] for m in station.on("cmd")] == ["J1", "J3"]  # no trigger for a duplicate
    assert (state.reject_reasons, state.pending, state.parts) == ({"duplicate_part_id": 4}, 0, 6)


def test_start_returns_once_the_broker_acknowledged_the_subscriptions(shared_broker):
    """Up means listening: a station's result published right after start() reaches the controller."""
    from controller.controller import LineController

    controller = LineController(line_config(shared_broker))
    try:
        controller.start()
        assert controller.client.connected.is_set() and controller.client.subscribed.is_set()
        controller.client.subscribe([(f"inspector/{controller.cfg.line}/+/result", 1)])  # again: a new SUBACK
        assert controller.client.subscribed.wait(10)
    finally:
        controller.stop()
