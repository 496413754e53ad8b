"""The MQTT side of a station against a real broker: drain order, acknowledgements, outages, status, commands."""

import shutil
import subprocess
import threading
import time
import uuid

import pytest

from edge.outbox import Outbox
from edge.publisher import Publisher
from inspector.mqtt import MqttConfig
from inspector.protocol.commands import CommandChannel
from inspector.protocol.enums import EventType
from inspector.protocol.payloads import Event, Stats
from inspector.protocol.topics import StationTopics


def _publisher(broker, tmp_path, station, protocol=None, commands=None, **mqtt):
    topics = StationTopics("inspector", "pubtest", station)
    box = Outbox(tmp_path / f"{station}.sqlite")
    cfg = MqttConfig(
        host=broker.host,
        port=broker.port,
        protocol=protocol or broker.protocol,
        reconnect_min_s=0.2,
        reconnect_max_s=1.0,
        **mqtt,
    )
    received = commands if commands is not None else []
    pub = Publisher(
        cfg,
        topics,
        f"pub-{station}-{uuid.uuid4().hex[:6]}",
        box,
        on_command=lambda payload, retained, channel: received.append((payload, retained, channel)),
    )
    return pub, box, topics


def _enqueue(pub, box, topics, seqs):
    for seq in seqs:
        box.add(uuid.uuid4().hex, seq, topics.result, f'{{"seq": {seq}}}')
        pub.notify()


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_results_are_published_in_order_and_deleted_when_acknowledged(shared_broker, tmp_path, protocol):
    if protocol == "5" and shared_broker.protocol != "5":
        pytest.skip("this broker speaks MQTT 3.1.1 only")
    station = f"order-{protocol.replace('.', '')}"
    pub, box, topics = _publisher(shared_broker, tmp_path, station, protocol=protocol, max_inflight=5)
    rec = shared_broker.subscriber([topics.base + "/#"])
    try:
        pub.start()
        _enqueue(pub, box, topics, range(1, 121))
        rec.wait_for(lambda r: len(r.results()) >= 120, what="120 results")
        assert [m["seq"] for m in rec.results()] == list(range(1, 121))
        assert all(not m.retain for m in rec.on("result"))
        assert pub.flush(10.0) and box.depth() == 0
        assert [m.text for m in rec.on("status")] == ["online"]
    finally:
        pub.stop()
        rec.close()


def test_results_queued_before_the_broker_answers_go_out_on_connect(mqtt_broker, tmp_path):
    mqtt_broker.stop()
    pub, box, topics = _publisher(mqtt_broker, tmp_path, "late-broker")
    pub.start()
    try:
        _enqueue(pub, box, topics, range(1, 21))
        time.sleep(0.5)
        assert box.depth() == 20 and not pub.connected
        pub.client.loop_stop()  # the subscriber must be there before the drain (amqtt keeps nothing)
        mqtt_broker.start()
        rec = mqtt_broker.subscriber([topics.result])
        pub.client.loop_start()
        _wait(lambda: box.depth() == 0)
        rec.wait_for(lambda r: len(r.results()) >= 20, what="20 results")
        assert [m["seq"] for m in rec.results()] == list(range(1, 21))
        rec.close()
    finally:
        pub.stop()


def test_broker_outage_in_the_middle_of_a_drain_loses_nothing_and_keeps_order(mqtt_broker, tmp_path):
    pub, box, topics = _publisher(mqtt_broker, tmp_path, "outage", max_inflight=10)
    rec = mqtt_broker.subscriber([topics.result], persistent=True)
    pub.start()
    stop_feeding = threading.Event()
    fed = []

    def feed():  # a station keeps producing results through the outage
        seq = len(fed)
        while not stop_feeding.is_set():
            seq += 1
            _enqueue(pub, box, topics, [seq])
            fed.append(seq)
            time.sleep(0.005)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        rec.wait_for(lambda r: len(r.results()) >= 50, what="first results")
        if not mqtt_broker.persistent:
            # amqtt loses what it acknowledged but had not forwarded when it stops: quiesce first.
            # Mosquitto (persistence on) is stopped with results in flight.
            stop_feeding.set()
            feeder.join()
            assert pub.flush(10.0)
            rec.wait_for(lambda r: len(r.results()) >= len(fed), what="quiescent")
            stop_feeding.clear()
            feeder = threading.Thread(target=feed)
            feeder.start()
        mqtt_broker.stop()
        seen_at_stop = len(fed)
        _wait(lambda: len(fed) > seen_at_stop + 100)  # results pile up in the outbox meanwhile
        assert box.depth() >= 100
        if mqtt_broker.persistent:
            mqtt_broker.start()
        else:
            mqtt_broker.start_before([rec], [pub.client])
        _wait(lambda: len(fed) > seen_at_stop + 200)
        stop_feeding.set()
        feeder.join()
        assert pub.flush(30.0), f"{box.depth()} results still queued"
        rec.wait_for(
            lambda r: {m["seq"] for m in r.results()} >= set(fed), timeout=30, what="every result after the outage"
        )
        seqs = [m["seq"] for m in rec.results()]
        unique = list(dict.fromkeys(seqs))  # duplicates are allowed (at-least-once), gaps and reordering not
        assert unique == fed
    finally:
        stop_feeding.set()
        pub.stop()
        rec.close()


def test_status_online_then_offline_retained_on_clean_stop(shared_broker, tmp_path):
    pub, box, topics = _publisher(shared_broker, tmp_path, "status")
    live = shared_broker.subscriber([topics.status])
    pub.start()
    live.wait_for(lambda r: r.on("status"), what="online")  # now the broker holds it
    live.close()
    late = shared_broker.subscriber([topics.status])
    late.wait_for(lambda r: [m.text for m in r.on("status")] == ["online"], what="retained online")
    assert late.on("status")[0].retain
    pub.stop()
    later = shared_broker.subscriber([topics.status])
    later.wait_for(lambda r: r.on("status"), what="retained offline")
    assert {(m.text, m.retain) for m in later.on("status")} == {("offline", True)}
    late.close()
    later.close()


def test_commands_reach_the_callback_and_retained_ones_are_flagged(shared_broker, tmp_path):
    received = []
    pub, box, topics = _publisher(shared_broker, tmp_path, "cmds", commands=received)
    pub.start()
    sender = shared_broker.subscriber([topics.event])
    try:
        assert pub.cmd_subscribed.wait(20)
        sender.publish(topics.cmd, b'{"cmd": "pause"}')
        sender.publish(topics.cmd, b'{"cmd": "resume"}', retain=True)
        sender.publish(topics.engineering, b'{"cmd": "reload"}')
        _wait(lambda: len(received) == 3)
        assert received[0] == (b'{"cmd": "pause"}', False, CommandChannel.OPERATIONAL)
        assert received[2] == (b'{"cmd": "reload"}', False, CommandChannel.ENGINEERING)
        pub.publish_event(Event(ts=time.time(), type=EventType.SNAPSHOT, message="hello"))
        sender.wait_for(lambda r: r.events("snapshot"), what="event")
    finally:
        sender.publish(topics.cmd, b"", retain=True)  # clear the retained command
        pub.stop()
        sender.close()


def test_a_result_the_broker_refuses_is_set_aside_not_resent(tmp_path):
    from tests.fixtures_mqtt import Broker

    acl = tmp_path / "acl"
    acl.write_text("topic readwrite inspector/pubtest/ok/#\ntopic read inspector/pubtest/denied/#\n")
    broker = Broker(tmp_path / "acl-broker", mosquitto_extra=[f"acl_file {acl}"])
    if broker.kind != "mosquitto":
        pytest.skip("needs Mosquitto's ACLs and MQTT 5 reason codes")
    broker.start()
    refused = []
    topics = StationTopics("inspector", "pubtest", "ok")
    box = Outbox(tmp_path / "o.sqlite")
    pub = Publisher(
        MqttConfig(host=broker.host, port=broker.port),
        topics,
        "acl-test",
        box,
        on_command=lambda *a: None,
        on_rejected=lambda row, reason: refused.append((row.seq, reason)),
    )
    try:
        pub.start()
        for seq, topic in enumerate([topics.result, "inspector/pubtest/denied/result", topics.result], start=1):
            box.add(uuid.uuid4().hex, seq, topic, "{}")
        pub.notify()
        _wait(lambda: box.depth() == 0)
        assert refused == [(2, "broker refused the result: Not authorized")]
        assert [r.seq for r in box.rejected()] == [2]
    finally:
        pub.stop()
        broker.stop()


@pytest.mark.skipif(
    not (shutil.which("openssl") and shutil.which("mosquitto_passwd")), reason="needs openssl and mosquitto_passwd"
)
def test_tls_and_password_from_the_environment(tmp_path, monkeypatch):
    from tests.fixtures_mqtt import Broker, make_certificates

    make_certificates(tmp_path)
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "cam1", "right-pw"], check=True, capture_output=True
    )
    broker = Broker(
        tmp_path / "tls-broker",
        mosquitto_extra=[
            f"cafile {tmp_path / 'ca.crt'}",
            f"certfile {tmp_path / 'server.crt'}",
            f"keyfile {tmp_path / 'server.key'}",
            "allow_anonymous false",
            f"password_file {tmp_path / 'passwd'}",
        ],
    )
    if broker.kind != "mosquitto":
        pytest.skip("needs Mosquitto")
    broker.start()
    topics = StationTopics("inspector", "pubtest", "tls")
    try:
        for password, delivered in (("wrong-pw", False), ("right-pw", True)):
            monkeypatch.setenv("TEST_MQTT_PASSWORD", password)
            cfg = MqttConfig(
                host="127.0.0.1",
                port=broker.port,
                username="cam1",
                password_env="TEST_MQTT_PASSWORD",
                tls={"ca_file": tmp_path / "ca.crt"},
                reconnect_min_s=0.2,
                reconnect_max_s=0.5,
            )
            box = Outbox(tmp_path / f"{password}.sqlite")
            pub = Publisher(cfg, topics, f"tls-{password}", box, on_command=lambda *a: None)
            pub.start()
            box.add(uuid.uuid4().hex, 1, topics.result, "{}")
            pub.notify()
            try:
                if delivered:
                    _wait(lambda box=box: box.depth() == 0)  # acknowledged over TLS with the right password
                else:
                    time.sleep(1.5)
                    assert box.depth() == 1 and not pub.connected
            finally:
                pub.stop()
    finally:
        broker.stop()


def test_stats_are_retained(shared_broker, tmp_path):
    pub, box, topics = _publisher(shared_broker, tmp_path, "stats")
    pub.start()
    try:
        _wait(lambda: pub.connected)
        pub.publish_stats(
            Stats(
                ts=time.time(),
                uptime_s=1.0,
                fps=2.0,
                frames_captured=3,
                frames_inspected=3,
                frames_dropped=0,
                outbox_depth=0,
                camera_state="running",
                model_version="7",
            )
        )
        live = shared_broker.subscriber([topics.stats])
        live.wait_for(lambda r: r.on("stats"), what="stats")  # now the broker surely holds it
        rec = shared_broker.subscriber([topics.stats])
        rec.wait_for(lambda r: r.on("stats"), what="retained stats")
        message = rec.on("stats")[0]
        assert message.retain and message.json()["model_version"] == "7"
        rec.close()
        live.close()
    finally:
        pub.stop()
