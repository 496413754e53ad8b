"""The production Mosquitto configuration, run for real: authentication, the ACL, TLS and the queue limits.

The shipped deploy/mosquitto/mosquitto.conf, conf.d/tls.conf and acl are started on free loopback ports
with only their file paths and ports rewritten; passwords come from mosquitto_passwd, certificates from
openssl. A denied publish is proven by ordering: the denied message and then an allowed sentinel go out
with QoS 1 (each acknowledged before the next), and a subscriber that sees the sentinel without the denied
message before it did not get it.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.fixtures_mqtt import Broker, find_mosquitto, free_port, make_certificates

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"
PASSWORD = "s3cret-test"
USERS = ("cam1", "cam2", "controller", "dashboard", "operator", "engineer", "sparkplug")


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"expected {old!r} in the shipped config"
    return text.replace(old, new)


class ProductionBroker(Broker):
    """Mosquitto with the shipped config; only ports and file locations differ."""

    def __init__(self, workdir: Path, tls: bool):
        self.tls = tls
        self.tls_port = free_port()
        super().__init__(workdir, kind="mosquitto")

    def _write_config(self, *_extra_lines) -> None:  # replaces the test config of fixtures_mqtt.Broker
        work = self.workdir
        text = (DEPLOY / "mosquitto.conf").read_text()
        text = _replace(text, "password_file /etc/mosquitto/passwd", f"password_file {work}/passwd")
        text = _replace(text, "acl_file /etc/mosquitto/acl", f"acl_file {work}/acl")
        text = _replace(text, "persistence_location /var/lib/mosquitto/", f"persistence_location {work}/")
        text = _replace(text, "listener 1883 127.0.0.1", f"listener {self.port} 127.0.0.1")
        text = _replace(text, "include_dir /etc/mosquitto/conf.d", f"include_dir {work}/conf.d")
        if os.geteuid() == 0:
            text += "\nuser root\n"  # otherwise mosquitto drops to the 'mosquitto' user and cannot read tmp
        (work / "conf.d").mkdir(exist_ok=True)
        if self.tls:
            tls = (DEPLOY / "conf.d" / "tls.conf").read_text()
            tls = _replace(tls, "listener 8883", f"listener {self.tls_port} 127.0.0.1")
            tls = tls.replace("/etc/mosquitto/certs/", f"{work}/certs/")
            (work / "conf.d" / "tls.conf").write_text(tls)
        shutil.copy(DEPLOY / "acl", work / "acl")
        self.config = work / "mosquitto.conf"
        self.config.write_text(text)


def _production_broker(work: Path, tls: bool) -> ProductionBroker:
    """The shipped configuration in ``work``, with the users of USERS (cam2 added by add-station.sh)."""
    if find_mosquitto() is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto / mosquitto_passwd not installed")
    if tls:
        make_certificates(work / "certs")
    broker = ProductionBroker(work, tls=tls)
    passwd = work / "passwd"
    for user in USERS:
        if user == "cam2":
            continue  # added below by the shipped add-station.sh, like a technician would
        args = ["mosquitto_passwd", "-b", str(passwd), user, PASSWORD]
        subprocess.run(args[:1] + (["-c"] if not passwd.exists() else []) + args[1:], check=True, capture_output=True)
    env = {**os.environ, "ACL_FILE": str(work / "acl"), "PASSWD_FILE": str(passwd), "STATION_PASSWORD": PASSWORD}
    subprocess.run(["bash", str(DEPLOY / "add-station.sh"), "line1", "cam2"], check=True, env=env, capture_output=True)
    passwd.chmod(0o600)
    return broker


@pytest.fixture(scope="module")
def prod_broker(tmp_path_factory):
    broker = _production_broker(tmp_path_factory.mktemp("prod-broker"), tls=shutil.which("openssl") is not None)
    broker.start()
    yield broker
    broker.stop()


class Client:
    """A paho MQTT 5 client with credentials that records what it receives and how it was answered."""

    def __init__(self, broker: ProductionBroker, user, password=PASSWORD, tls=False, subscribe=()):
        self.messages = []
        self.cond = threading.Condition()
        self.connack = threading.Event()
        self.reason = None
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set(ca_certs=str(broker.workdir / "certs" / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._subscribe = list(subscribe)
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(broker.host, broker.tls_port if tls else broker.port, keepalive=10)
        self.client.loop_start()
        assert self.connack.wait(10), "no CONNACK"
        if self.ok and self._subscribe:
            self.client.subscribe([(t, 1) for t in self._subscribe])
            assert self._subscribed.wait(10)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.reason = reason_code
        self.connack.set()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload.decode()))
            self.cond.notify_all()

    @property
    def ok(self) -> bool:
        return self.reason is not None and not self.reason.is_failure

    def publish(self, topic, payload):
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)

    def wait_for(self, topic, payload, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while (topic, payload) not in self.messages:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{topic} {payload} never arrived; got {self.messages}"
                self.cond.wait(remaining)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(prod_broker):
    made = []

    def make(user, **kwargs):
        c = Client(prod_broker, user, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def _denied_then_sentinel(publisher, topics, sentinel_topic, observer, sentinel_publisher=None):
    token = uuid.uuid4().hex
    for topic in topics:
        publisher.publish(topic, f"forbidden-{token}")
    (sentinel_publisher or publisher).publish(sentinel_topic, f"sentinel-{token}")
    observer.wait_for(sentinel_topic, f"sentinel-{token}")
    return [m for m in observer.messages if m[1] == f"forbidden-{token}"]


def test_anonymous_and_wrong_passwords_are_refused(clients):
    assert not clients(None).ok
    assert not clients("cam1", password="wrong").ok
    assert clients("cam1").ok


def test_station_writes_its_own_topics_only(clients):
    observer = clients("dashboard", subscribe=["inspector/#", "homeassistant/#"])
    cam1 = clients("cam1")
    leaked = _denied_then_sentinel(
        cam1,
        [
            "inspector/line1/cam2/result",
            "inspector/line1/cam2/status",
            "inspector/line1/controller/state",
            "inspector/line1/cam1/cmd",
            "homeassistant/sensor/inspector_line1_cam2/passed/config",
        ],
        "inspector/line1/cam1/result",
        observer,
    )
    assert leaked == []
    cam1.publish("homeassistant/sensor/inspector_line1_cam1/passed/config", "{}")
    observer.wait_for("homeassistant/sensor/inspector_line1_cam1/passed/config", "{}")


def test_station_added_by_the_script_is_confined_too(clients):
    observer = clients("dashboard", subscribe=["inspector/#"])
    cam2 = clients("cam2")
    assert cam2.ok
    assert _denied_then_sentinel(cam2, ["inspector/line1/cam1/result"], "inspector/line1/cam2/result", observer) == []


def test_station_reads_only_its_own_commands(clients):
    cam1 = clients("cam1", subscribe=["inspector/line1/+/cmd"])
    controller = clients("controller")
    controller.publish("inspector/line1/cam2/cmd", '{"cmd": "pause"}')
    controller.publish("inspector/line1/cam1/cmd", '{"cmd": "trigger", "part_id": "P1"}')
    cam1.wait_for("inspector/line1/cam1/cmd", '{"cmd": "trigger", "part_id": "P1"}')
    assert [t for t, _ in cam1.messages] == ["inspector/line1/cam1/cmd"]


def test_dashboard_user_cannot_write_anything(clients):
    observer = clients("dashboard", subscribe=["inspector/#", "homeassistant/#", "spBv1.0/#", "plc/#"])
    dashboard = clients("dashboard")
    cam1 = clients("cam1")
    leaked = _denied_then_sentinel(
        dashboard,
        [
            "inspector/line1/cam1/cmd",
            "inspector/line1/cam1/result",
            "inspector/line1/controller/state",
            "homeassistant/sensor/x/y/config",
            "spBv1.0/g/NCMD/n",
            "plc/line1/reject",
            "anything/else",
        ],
        "inspector/line1/cam1/stats",
        observer,
        sentinel_publisher=cam1,
    )
    assert leaked == []


def test_controller_and_operator_may_send_station_commands(clients):
    cam1 = clients("cam1", subscribe=["inspector/line1/cam1/cmd"])
    clients("controller").publish("inspector/line1/cam1/cmd", "from-controller")
    clients("operator").publish("inspector/line1/cam1/cmd", "from-operator")
    cam1.wait_for("inspector/line1/cam1/cmd", "from-controller")
    cam1.wait_for("inspector/line1/cam1/cmd", "from-operator")


def test_only_the_engineer_may_send_engineering_commands(clients):
    engineering = "inspector/line1/cam2/engineering"
    cam2 = clients("cam2", subscribe=[engineering, "inspector/line1/cam2/cmd"])
    engineer = clients("engineer")
    for user in ("operator", "controller", "sparkplug", "cam1", "cam2", "dashboard"):
        leaked = _denied_then_sentinel(clients(user), [engineering], engineering, cam2, sentinel_publisher=engineer)
        assert leaked == [], f"{user} may write {engineering}"
    assert (
        _denied_then_sentinel(engineer, ["inspector/line1/cam2/cmd", "inspector/line1/cam2/result"], engineering, cam2)
        == []
    )


def test_tls_listener_accepts_clients_that_trust_the_ca(prod_broker, clients):
    if not prod_broker.tls:
        pytest.skip("openssl not installed")
    observer = clients("dashboard", subscribe=["inspector/#"])
    cam1 = clients("cam1", tls=True)
    assert cam1.ok
    cam1.publish("inspector/line1/cam1/status", "online-over-tls")
    observer.wait_for("inspector/line1/cam1/status", "online-over-tls")


def test_queue_limits_are_raised_above_the_dropping_default():
    settings = {}
    for line in (DEPLOY / "mosquitto.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            settings.setdefault(key, value)
    assert settings["allow_anonymous"] == "false" and settings["persistence"] == "true"
    assert int(settings["max_queued_messages"]) == 0 or int(settings["max_queued_messages"]) >= 100_000
    assert settings["queue_qos0_messages"] == "false"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_results_queued_for_the_away_controller_survive_a_broker_crash(tmp_path, how):
    """The delivery guarantee for a broker crash, with the shipped config (only ports, paths and users differ).

    The line controller is away (its persistent session is on the broker); a station publishes 300 results
    through its real outbox and publisher until the outbox is empty (every result PUBACKed); the broker is
    stopped with SIGTERM or killed with SIGKILL (kill -9) and started again; the controller comes back and
    every result id must be in its decisions. A QoS 1 round trip after the last PUBACK makes sure the
    broker finished the loop iteration of the last result (Mosquitto acknowledges a message before it
    saves it in that same iteration: a kill inside that window is the documented residual loss).
    """
    from controller.controller import LineController
    from edge.outbox import Outbox
    from edge.publisher import Publisher
    from inspector.mqtt import MqttConfig
    from inspector.protocol.topics import StationTopics
    from tests.fixtures_controller import line_config, result_payload

    broker = _production_broker(tmp_path / "broker", tls=False)
    (tmp_path / "password").write_text(PASSWORD + "\n")
    cfg = line_config(
        broker,
        line="line1",
        mqtt={
            "host": broker.host,
            "port": broker.port,
            "protocol": "5",
            "username": "controller",
            "password_file": str(tmp_path / "password"),
        },
    )
    broker.start()
    try:
        controller = LineController(cfg)
        controller.start()
        controller.stop()  # away: the broker keeps its session and queues the results for it

        topics = StationTopics("inspector", "line1", "cam1")
        station_mqtt = MqttConfig(
            host=broker.host,
            port=broker.port,
            username="cam1",
            password_file=tmp_path / "password",
            reconnect_min_s=0.2,
            reconnect_max_s=1.0,
        )
        box = Outbox(tmp_path / "outbox.sqlite")
        publisher = Publisher(station_mqtt, topics, "inspector-line1-cam1", box, on_command=lambda *a: None)
        publisher.start()
        sent = [uuid.uuid4().hex for _ in range(300)]
        try:
            for seq, rid in enumerate(sent, 1):
                box.add(rid, seq, topics.result, result_payload("line1", "cam1", f"K{seq}", "pass", rid=rid, seq=seq))
                publisher.notify()
            assert publisher.flush(120.0), f"{box.depth()} results not acknowledged"
        finally:
            publisher.stop()
        assert box.depth() == 0  # the station has every PUBACK: from here on the results are the broker's
        round_trip = Client(broker, "cam1")
        round_trip.publish("inspector/line1/cam1/event", "round trip")
        round_trip.close()

        if how == "SIGKILL":
            broker.proc.send_signal(signal.SIGKILL)
            broker.proc.wait(15)
        else:
            broker.stop()
        broker.start()

        seen = []
        controller = LineController(cfg)
        controller.add_listener(seen.append)
        controller.start()
        try:
            deadline = time.monotonic() + 20
            while len({rid for d in seen for rid in d.result_ids}) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            controller.stop()
        lost = set(sent) - {rid for d in seen for rid in d.result_ids}
        assert not lost, f"{len(lost)} of {len(sent)} acknowledged results lost after {how}"
    finally:
        broker.stop()
