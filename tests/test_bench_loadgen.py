"""The many-stations load generator at a small load, against a real Mosquitto, the real line controller
(``inspector controller``) and the real monitor (LineMonitor on its own subscription), each in its own process.

Counts only, never times: every announced part is decided with the action its verdicts call for, every
station received every trigger, and every published result reached both the controller and the monitor.
"""

import json

import pytest

from bench.loadgen import Load, expected_action, line_config, parse_steps, run_step, verdict_for
from controller.config import LineConfig
from inspector.localbroker import find_mosquitto
from inspector.protocol.enums import Action, DecisionReason, Verdict

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="needs Mosquitto")


def test_small_load_every_part_decided_and_every_result_received(mqtt_broker, tmp_path):
    # A high fail rate so that, with this seed, both actions occur among the 10 parts (checked below); a
    # deadline far beyond any scheduling delay of a busy CI machine, so that no part times out by slowness.
    load = Load(stations=3, rate_hz=5.0, seconds=2.0, fail_rate=0.1, review_rate=0.05, seed=3, deadline_s=30.0)
    record = run_step(load, mqtt_broker, tmp_path, p99_limit_ms=float("inf"))

    assert record["parts_announced"] == load.parts == 10
    assert record["parts_decided"] == 10, record
    assert record["wrong_actions"] == 0 and record["extra_decisions"] == 0
    assert DecisionReason.TIMEOUT.value not in record["decisions_by_reason"]
    assert record["triggers_received_by_stations"] == 3 * 10
    assert record["results_published"] == 3 * 10
    assert record["results_received_by_controller"] == 30
    assert record["duplicates"] == 0
    assert record["results_received_by_monitor"] == 30
    assert record["monitor"]["stations_seen"] == 3 and record["monitor"]["bad_messages"] == 0
    assert record["broke"] == [] and record["ok"]

    actions = [
        expected_action([verdict_for(load.seed, s, f"P{k:07d}", load.fail_rate, load.review_rate) for s in load.names])
        for k in range(1, 11)
    ]
    assert Action.ACCEPT in actions and Action.REJECT in actions  # both paths of the controller were exercised
    rejects = sum(n for reason, n in record["decisions_by_reason"].items() if reason != DecisionReason.PASS.value)
    assert rejects == actions.count(Action.REJECT)
    assert sum(record["reject_commands_to_plc"].values()) == rejects
    json.dumps(record)  # the record goes into bench/results/loadgen.json as it is


def test_the_generated_line_config_is_a_valid_controller_config(mqtt_broker):
    load = Load(stations=4)
    cfg = LineConfig.model_validate(line_config(load, mqtt_broker))
    assert cfg.triggered_stations == ["s001", "s002", "s003", "s004"]
    assert cfg.trigger.input_topic == "plc/load/part" and cfg.actuator.type == "mqtt"
    assert cfg.mqtt.max_inflight == 20  # as shipped
    # --controller-inflight: the controller's own key, which its client honours (tests/test_controller_config.py)
    assert LineConfig.model_validate(line_config(load, mqtt_broker, 1000)).mqtt.max_inflight == 1000


def test_verdicts_are_a_fixed_function_of_seed_station_and_part():
    first = [verdict_for(1, "s001", f"P{k}", 0.2, 0.1) for k in range(200)]
    assert first == [verdict_for(1, "s001", f"P{k}", 0.2, 0.1) for k in range(200)]
    assert set(first) == {Verdict.PASS, Verdict.FAIL, Verdict.REVIEW}
    assert expected_action([Verdict.PASS, Verdict.REVIEW]) == Action.REJECT
    assert expected_action([Verdict.PASS, Verdict.PASS]) == Action.ACCEPT
    assert parse_steps("50x20, 100x40") == [(50, 20.0), (100, 40.0)]
