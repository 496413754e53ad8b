"""Issue 16: no payload may mute a station, no refused result may vanish, no reload may crash a station.

Unit tests of the command contract first, then whole stations against a real broker (``shared_broker``,
``mqtt_broker``) and a real INT8 bundle (``int8_bundle``).
"""

from __future__ import annotations

import json
import random
import time

import pytest

from inspector.protocol.commands import (
    CommandChannel,
    CommandError,
    SetThresholdCommand,
    TriggerCommand,
    command_topic,
    parse_command,
    resolve_bundle_path,
)
from inspector.protocol.topics import StationTopics


def _nested(depth: int) -> bytes:
    return b'{"cmd": "pause", "x": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    "payload, reason",
    [
        (_nested(1000), "nested deeper than"),
        (b'{"cmd": "trigger", "part_id": ' + b'{"a":' * 2000 + b"1" + b"}" * 2000 + b"}", "nested deeper than"),
        (json.dumps({"cmd": "pause"}).encode("utf-16"), "not UTF-8"),
        (json.dumps({"cmd": "pause"}).encode("utf-16-le"), "not valid JSON"),
        (b'{"cmd": "pause", "cmd": "resume"}', "duplicate key 'cmd'"),
        (b'{"cmd": "set_threshold", "threshold": NaN}', "not valid JSON"),
        (b'{"cmd": "set_threshold", "threshold": 1' + b"0" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_hostile_payloads_are_command_errors(payload, reason):
    assert len(payload) < 16 * 1024
    with pytest.raises(CommandError) as info:
        parse_command(payload)
    assert reason in str(info.value)


def test_strings_with_brackets_do_not_count_as_nesting():
    cmd = parse_command(json.dumps({"cmd": "trigger", "part_id": "[" * 100 + "{" * 100}).encode())
    assert cmd.part_id.startswith("[[[")


@pytest.mark.parametrize("name", ["v2\x00.inspector", "a" * 5000, "\udcff.inspector", "v2.inspector/\x00"])
def test_reload_names_that_are_no_paths_are_command_errors(tmp_path, name):
    (tmp_path / "v2.inspector").write_bytes(b"x")
    with pytest.raises(CommandError):
        resolve_bundle_path(name, tmp_path)


def test_a_reload_with_a_nul_byte_is_refused_by_parse_or_resolve(tmp_path):
    payload = json.dumps({"cmd": "reload", "bundle": "v2\u0000.inspector"}).encode()
    with pytest.raises(CommandError):
        resolve_bundle_path(parse_command(payload, CommandChannel.ENGINEERING).bundle, tmp_path)


@pytest.mark.parametrize(
    "payload, channel",
    [
        (b'{"cmd": "set_threshold", "threshold": 0.5}', CommandChannel.OPERATIONAL),
        (b'{"cmd": "reload", "bundle": "v2.inspector"}', CommandChannel.OPERATIONAL),
        (b'{"cmd": "trigger"}', CommandChannel.ENGINEERING),
        (b'{"cmd": "pause"}', CommandChannel.ENGINEERING),
    ],
)
def test_each_command_is_accepted_only_on_its_own_topic(payload, channel):
    with pytest.raises(CommandError, match="command: publish it on"):
        parse_command(payload, channel)
    other = next(c for c in CommandChannel if c is not channel)
    assert parse_command(payload, other).channel is other


def test_senders_get_the_topic_of_the_command_from_the_contract():
    topics = StationTopics("inspector", "line1", "cam1")
    assert topics.engineering == "inspector/line1/cam1/engineering"
    assert command_topic(topics, TriggerCommand(cmd="trigger")) == topics.cmd
    assert command_topic(topics, SetThresholdCommand(cmd="set_threshold", threshold=0.5)) == topics.engineering
    assert parse_command(
        b'{"cmd": "set_threshold", "threshold": 0.9, "override": true}', CommandChannel.ENGINEERING
    ).override


# -- whole stations ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """A folder of six small parts the station replays in a loop."""
    from tests.fixtures_edge import write_folder

    folder = tmp_path_factory.mktemp("frames")
    write_folder(folder, 6)
    return folder


class LiveStation:
    """A looping station on ``broker`` plus a recorder of everything it publishes."""

    def __init__(self, broker, workdir, bundle, frames, **overrides):
        from tests.fixtures_edge import StationThread, station_config

        source = {"type": "folder", "path": str(frames), "loop": True, "fps": 20}
        self.cfg = station_config(broker, workdir, bundle, source, overrides=overrides)
        self.base = f"inspector/edgetest/{self.cfg.station}"
        self.rec = broker.subscriber([f"{self.base}/#"])
        self.thread = StationThread(self.cfg)
        self.station = self.thread.station

    def __enter__(self) -> LiveStation:
        self.thread.start()
        self.rec.wait_for(lambda r: len(r.results()) >= 2, what="first results")
        assert self.station.publisher.cmd_subscribed.wait(20)
        return self

    def __exit__(self, *exc) -> None:
        if self.thread.running:
            self.thread.stop()
        self.rec.close()

    def send(self, payload: bytes, leaf: str = "cmd", retain: bool = False) -> None:
        self.rec.publish(f"{self.base}/{leaf}", payload, retain=retain)

    def status(self) -> list:
        return [m.text for m in self.rec.on("status")]

    def answers_and_inspects(self) -> None:
        """The station still takes commands and still publishes results."""
        count = len(self.rec.results())
        self.rec.wait_for(lambda r: len(r.results()) > count + 2, what="results afterwards")
        rid = f"alive-{count}"
        self.send(json.dumps({"cmd": "snapshot", "request_id": rid}).encode())
        self.rec.wait_for(
            lambda r: any(e["details"].get("request_id") == rid for e in r.events("snapshot")),
            what="an answer to a snapshot command",
        )
        assert self.thread.running and self.status()[-1] == "online"


def test_hostile_commands_are_answered_and_the_station_keeps_working(shared_broker, tmp_path, int8_bundle, frames):
    hostile = [
        _nested(1000),
        json.dumps({"cmd": "reload", "bundle": "v2\u0000.inspector"}).encode(),
        json.dumps({"cmd": "pause"}).encode("utf-16"),
        b'{"cmd": "pause", "cmd": "resume"}',
    ]
    with LiveStation(shared_broker, tmp_path, int8_bundle, frames) as live:
        for payload in hostile:
            live.send(payload)
        live.rec.wait_for(lambda r: len(r.events("command_rejected")) == len(hostile), what="every rejection")
        live.answers_and_inspects()
        assert live.station.publisher.callback_errors == 0


def test_a_callback_that_raises_is_logged_and_counted_not_fatal(shared_broker, tmp_path, int8_bundle, frames):
    with LiveStation(shared_broker, tmp_path, int8_bundle, frames) as live:

        def boom(payload, retained):
            raise RuntimeError("planted bug in the command handler")

        live.station.publisher._on_command = boom
        live.send(b'{"cmd": "pause"}')
        live.rec.wait_for(lambda r: live.station.publisher.callback_errors == 1, what="the counted error")
        live.station.publisher._on_command = live.station._on_command
        live.answers_and_inspects()


class WatchdogSocket:
    """The datagram socket systemd would listen on (``$NOTIFY_SOCKET``): records what the station sends."""

    def __init__(self, path):
        import socket

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.path = str(path)

    def drain(self) -> list:
        messages = []
        while True:
            try:
                messages.append(self.sock.recv(4096).decode())
            except OSError:
                return messages


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the planted death
def test_a_dead_network_loop_takes_the_station_offline_and_stops_the_watchdog(
    shared_broker, tmp_path, int8_bundle, frames
):
    from inspector.exitcodes import ExitCode
    from inspector.sdnotify import Notifier

    watchdog = WatchdogSocket(tmp_path / "notify.sock")
    with LiveStation(shared_broker, tmp_path, int8_bundle, frames) as live:
        live.station.notifier = Notifier(env={"NOTIFY_SOCKET": watchdog.path, "WATCHDOG_USEC": "100000"})
        live.rec.wait_for(lambda r: "WATCHDOG=1" in watchdog.drain(), what="the watchdog being fed")

        def unguarded(client, userdata, message):  # what a callback without a guard does to paho's thread
            raise RuntimeError("planted: the network loop dies")

        live.station.publisher.client.on_message = unguarded
        live.send(b'{"cmd": "pause"}')
        assert live.thread.wait(60) == ExitCode.NETWORK
        live.rec.wait_for(lambda r: live.status()[-1:] == ["offline"], what="status offline")
        assert watchdog.drain()[-1] == "STOPPING=1"


def test_a_retained_command_delivered_live_is_refused(shared_broker, tmp_path, int8_bundle, frames):
    if shared_broker.protocol != "5":
        pytest.skip("MQTT 3.1.1 clears the retain flag of a live delivery (docs/edge.md)")
    with LiveStation(shared_broker, tmp_path, int8_bundle, frames) as live:
        try:
            live.send(b'{"cmd": "pause", "request_id": "retained-live"}', retain=True)
            live.rec.wait_for(
                lambda r: any("retained" in e["message"] for e in r.events("command_rejected")),
                what="the retained command refused",
            )
            assert not live.station.paused
            live.answers_and_inspects()
        finally:
            live.send(b"", retain=True)  # clear the broker's retained copy


def test_engineering_commands_have_their_own_topic_a_calibrated_range_and_before_after_events(
    shared_broker, tmp_path, int8_bundle, frames
):
    from inspector.bundle import Bundle

    calibrated = Bundle.load(int8_bundle).manifest.decision
    low = calibrated.review_low if calibrated.review_low is not None else calibrated.threshold
    high = calibrated.review_high if calibrated.review_high is not None else calibrated.threshold
    inside = (low + high) / 2  # exact: JSON carries the float as is, and a calibrated band can be 3e-8 wide
    outside = 0.999 if high < 0.999 else 0.001
    with LiveStation(shared_broker, tmp_path, int8_bundle, frames) as live:
        no_band = {"review_low": outside, "review_high": outside} if calibrated.review_low is not None else {}
        live.send(json.dumps({"cmd": "set_threshold", "threshold": outside, "override": True}).encode())
        live.send(b'{"cmd": "pause"}', leaf="engineering")
        live.send(
            json.dumps({"cmd": "set_threshold", "threshold": outside, "request_id": "no-override", **no_band}).encode(),
            leaf="engineering",
        )
        live.rec.wait_for(lambda r: len(r.events("command_rejected")) == 3, what="three refusals")
        reasons = [e["details"]["reason"] for e in live.rec.events("command_rejected")]
        assert "engineering command: publish it on" in reasons[0]
        assert "operational command: publish it on" in reasons[1]
        assert "override" in reasons[2] and "calibrat" in reasons[2]
        assert {r["threshold"] for r in live.rec.results()} == {calibrated.threshold}

        live.send(
            json.dumps({"cmd": "set_threshold", "threshold": inside, "request_id": "in"}).encode(), leaf="engineering"
        )
        live.send(
            json.dumps(
                {"cmd": "set_threshold", "threshold": outside, "override": True, "request_id": "over", **no_band}
            ).encode(),
            leaf="engineering",
        )
        live.rec.wait_for(lambda r: len(r.events("threshold_changed")) == 2, what="two threshold changes")
        live.rec.wait_for(lambda r: r.results()[-1]["threshold"] == outside, what="the overridden threshold in use")
        first, second = live.rec.events("threshold_changed")
        assert first["details"]["request_id"] == "in" and not first["details"]["override"]
        assert first["details"]["before"]["threshold"] == calibrated.threshold
        assert first["details"]["after"]["threshold"] == inside
        assert second["details"]["before"]["threshold"] == inside and second["details"]["override"]
        assert second["details"]["after"]["threshold"] == outside


def _versioned(src, dest, version: str):
    from inspector.bundle import Bundle

    bundle = Bundle.load(src)
    return Bundle.create(bundle.manifest.model_copy(update={"version": version}), bundle.model).save(dest)


def test_deleting_or_swapping_the_bundle_right_after_a_reload_never_crashes_the_station(
    shared_broker, tmp_path, int8_bundle, frames
):
    import hashlib
    import os

    models = tmp_path / "models"
    models.mkdir()
    current = _versioned(int8_bundle, models / "v1.inspector", "v1")
    good = _versioned(int8_bundle, tmp_path / "v2.bytes", "v2").read_bytes()
    other = _versioned(int8_bundle, tmp_path / "v3.bytes", "v3").read_bytes()
    outside = tmp_path / "outside.inspector"
    outside.write_bytes(other)
    target = models / "next.inspector"
    digest = hashlib.sha256(good).hexdigest()

    def put(data: bytes) -> None:
        tmp = models / ".put.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def symlink_out() -> None:
        target.unlink()
        target.symlink_to(outside)

    disturb = [target.unlink, lambda: put(other), lambda: put(b"PK\x03\x04 not a bundle"), symlink_out]
    rng = random.Random(16)
    with LiveStation(shared_broker, tmp_path, current, frames) as live:

        def answer(rid):
            for kind in ("model_reloaded", "model_reload_failed", "command_rejected"):
                for event in live.rec.events(kind):
                    if event["details"].get("request_id") == rid:
                        return kind, event
            return None

        for i in range(24):
            if target.is_symlink():
                target.unlink()
            put(good)
            rid = f"race-{i}"
            live.send(
                json.dumps({"cmd": "reload", "bundle": target.name, "sha256": digest, "request_id": rid}).encode(),
                leaf="engineering",
            )
            time.sleep(rng.uniform(0.0, 0.15))
            disturb[i % len(disturb)]()
            live.rec.wait_for(lambda r, rid=rid: answer(rid) is not None, what=f"an answer to {rid}")
            kind, event = answer(rid)
            assert live.thread.running, f"the station stopped after {rid}"
            if kind == "model_reloaded":  # what was verified is what was loaded: never the swapped-in v3
                assert event["details"]["after"]["version"] == "v2"
        if target.is_symlink():
            target.unlink()
        put(good)
        live.send(
            json.dumps({"cmd": "reload", "bundle": "v1.inspector", "request_id": "final"}).encode(), leaf="engineering"
        )
        live.rec.wait_for(lambda r: answer("final") is not None, what="an answer to the final reload")
        assert answer("final")[0] == "model_reloaded"
        live.answers_and_inspects()


@pytest.fixture
def acl_broker(tmp_path):
    """Mosquitto whose ACL lets anyone do anything except publish a result of line ``edgetest``."""
    from tests.fixtures_mqtt import Broker

    acl = tmp_path / "acl"
    acl.write_text(
        "topic read inspector/edgetest/+/result\ntopic readwrite inspector/edgetest/+/status\n"
        "topic readwrite inspector/edgetest/+/stats\ntopic readwrite inspector/edgetest/+/event\n"
        "topic readwrite inspector/edgetest/+/cmd\ntopic readwrite inspector/edgetest/+/engineering\n"
    )
    broker = Broker(tmp_path / "acl-broker", mosquitto_extra=[f"acl_file {acl}"])
    if broker.kind != "mosquitto":
        pytest.skip("needs Mosquitto's ACLs")
    broker.start()
    yield broker
    broker.stop()


def test_results_the_broker_refuses_are_kept_and_the_run_fails(acl_broker, tmp_path, int8_bundle, frames):
    from edge.outbox import Outbox
    from inspector.exitcodes import ExitCode
    from tests.fixtures_edge import StationThread, station_config

    cfg = station_config(
        acl_broker,
        tmp_path,
        int8_bundle,
        {"type": "folder", "path": str(frames)},
        overrides={"outbox.drain_timeout_s": 3},
    )
    rec = acl_broker.subscriber([f"inspector/edgetest/{cfg.station}/#"])
    assert StationThread(cfg).start().wait(120) == ExitCode.REFUSED
    rec.wait_for(lambda r: len(r.events("error")) >= 6, what="an error event per refused result")
    assert rec.results() == []
    box = Outbox(cfg.outbox.path)
    assert sorted(row.seq for row in box.rejected()) == list(range(1, 7))  # every result kept, none deleted
    box.close()
    rec.close()


def test_a_station_over_mqtt_3_1_1_needs_to_accept_that_refusals_are_invisible(
    acl_broker, tmp_path, int8_bundle, frames
):
    """3.1.1 acknowledges a refused publish like a delivered one: the default config refuses to run that way."""
    from edge.config import load_station_config
    from inspector.config import ConfigError

    overrides = {
        "bundle": str(int8_bundle),
        "source": {"type": "folder", "path": str(frames)},
        "mqtt.host": acl_broker.host,
        "mqtt.port": acl_broker.port,
        "mqtt.protocol": "3.1.1",
    }
    with pytest.raises(ConfigError, match=r"mqtt\.protocol"):
        load_station_config(None, overrides)
    cfg = load_station_config(None, {**overrides, "outbox.accept_mqtt311_acks": True})
    assert cfg.mqtt.protocol == "3.1.1"


def test_a_run_that_delivered_nothing_exits_non_zero(mqtt_broker, tmp_path, int8_bundle, frames):
    from inspector.exitcodes import ExitCode
    from tests.fixtures_edge import StationThread, station_config

    mqtt_broker.stop()
    cfg = station_config(
        mqtt_broker,
        tmp_path,
        int8_bundle,
        {"type": "folder", "path": str(frames), "watch": True, "poll_s": 0.05},
        overrides={"outbox.drain_timeout_s": 0.5},
    )
    station = StationThread(cfg).start()
    deadline = time.monotonic() + 60
    while station.station.outbox is None or station.station.outbox.depth() < 6:
        assert time.monotonic() < deadline, "results were not produced"
        time.sleep(0.05)
    assert station.stop() == ExitCode.UNDELIVERED


# -- item 11: configuration and image errors name their cause ------------------------------------------


@pytest.mark.parametrize("overrides, key", [({"mqtt.host": ""}, "mqtt.host"), ({"mqtt.host": "bad host"}, "mqtt.host")])
def test_broker_config_errors_name_the_key(tmp_path, overrides, key):
    from edge.config import load_station_config
    from inspector.config import ConfigError

    base = {"bundle": str(tmp_path / "m.inspector"), "source": {"type": "folder", "path": str(tmp_path)}}
    with pytest.raises(ConfigError) as info:
        load_station_config(None, {**base, **overrides})
    assert key in str(info.value)


@pytest.mark.parametrize(
    "tls, key",
    [
        ({"ca_file": "/nonexistent/ca.crt"}, "mqtt.tls.ca_file"),
        ({"cert_file": "/nonexistent/c.crt", "key_file": "/nonexistent/c.key"}, "mqtt.tls.cert_file"),
    ],
)
def test_missing_tls_files_name_the_key(tls, key):
    from inspector.config import ConfigError
    from inspector.mqtt import MqttConfig, make_client

    with pytest.raises(ConfigError, match=key):
        make_client(MqttConfig(host="broker", tls=tls), "cam1")


def test_a_station_with_a_missing_ca_file_exits_with_the_config_code(shared_broker, tmp_path, int8_bundle, frames):
    from inspector.exitcodes import ExitCode
    from tests.fixtures_edge import StationThread, station_config

    cfg = station_config(
        shared_broker,
        tmp_path,
        int8_bundle,
        {"type": "folder", "path": str(frames)},
        overrides={"mqtt.tls": {"ca_file": str(tmp_path / "missing-ca.crt")}},
    )
    assert StationThread(cfg).start().wait(30) == ExitCode.CONFIG


def test_a_text_file_as_video_source_fails_fast_with_exit_4(shared_broker, tmp_path, int8_bundle):
    from inspector.exitcodes import ExitCode
    from tests.fixtures_edge import StationThread, station_config

    text = tmp_path / "clip.mp4"
    text.write_text("this is not a video\n" * 50)
    cfg = station_config(shared_broker, tmp_path, int8_bundle, {"type": "video", "path": str(text)})
    rec = shared_broker.subscriber([f"inspector/edgetest/{cfg.station}/event"])
    assert StationThread(cfg).start().wait(30) == ExitCode.SOURCE
    rec.wait_for(lambda r: r.events("error"), what="the error event")
    assert "clip.mp4" in rec.events("error")[0]["message"] and not rec.events("camera_lost")
    rec.close()


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with a tiny (truncated) payload and an IEND."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("kind", ["png", "jpg", "bmp", "tif"])
def test_images_over_the_pixel_limit_are_refused_before_decoding(tmp_path, kind):
    import cv2
    import numpy as np

    from inspector.imageio import MAX_PIXELS, ImageError, decode_image

    side = int(MAX_PIXELS**0.5) + 100
    if kind == "png":
        data = _png_header(side, side)
    else:  # a real small image whose header is edited to claim a huge size
        ok, encoded = cv2.imencode(f".{kind}", np.zeros((8, 8), np.uint8))
        data = bytearray(encoded.tobytes())
        if kind == "jpg":
            sof = data.index(b"\xff\xc0")
            data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2
        elif kind == "bmp":
            data[18:26] = side.to_bytes(4, "little") * 2
        else:
            data = bytes(data).replace(
                b"\x00\x01\x03\x00\x01\x00\x00\x00\x08\x00",
                b"\x00\x01\x03\x00\x01\x00\x00\x00" + side.to_bytes(2, "little"),
            )
            data = bytearray(
                data.replace(
                    b"\x01\x01\x03\x00\x01\x00\x00\x00\x08\x00",
                    b"\x01\x01\x03\x00\x01\x00\x00\x00" + side.to_bytes(2, "little"),
                )
            )
        data = bytes(data)
    with pytest.raises(ImageError, match="pixel limit"):
        decode_image(data, f".{kind}")


def test_a_png_named_jpg_is_decoded_by_its_content(tmp_path):
    import cv2
    import numpy as np

    from inspector.imageio import load_image

    gray = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    ok, png = cv2.imencode(".png", gray)
    (tmp_path / "frame.jpg").write_bytes(png.tobytes())
    assert load_image(tmp_path / "frame.jpg")[:, :, 0].tolist() == gray.tolist()


# -- bounded fuzz: thousands of generated payloads against a live station ----------------------------------

_NAMES = (
    "trigger",
    "pause",
    "resume",
    "snapshot",
    "set_threshold",
    "reload",
    "",
    "TRIGGER",
    "cmd",
    "\u0000",
    "selfdestruct",
    "set_threshold\u0000",
    "reload ",
)
_FIELDS = (
    "cmd",
    "part_id",
    "request_id",
    "threshold",
    "review_low",
    "review_high",
    "override",
    "bundle",
    "sha256",
    "x",
    "__proto__",
    "",
    "cmd ",
)


def _value(rng, depth: int = 0):
    """A random JSON value: scalars of every type, odd strings, and (shallow) containers."""
    choice = rng.randrange(12 if depth < 3 else 8)
    if choice == 0:
        return None
    if choice == 1:
        return rng.random() < 0.5
    if choice == 2:
        return rng.choice([0, 1, -1, 2**31, 2**63, -(2**64), 10**30])
    if choice == 3:
        return rng.choice([0.0, -0.0, 0.5, 1.0, 1.0000001, -1e-300, 1e308, 0.999999])
    if choice == 4:
        return "".join(
            chr(rng.choice([0, 9, 0x7F, 0x2028, 0xFEFF, 0x1F600, rng.randrange(32, 0x3000)]))
            for _ in range(rng.randrange(0, 40))
        )
    if choice == 5:
        return rng.choice(
            [
                "../../etc/passwd",
                "/etc/passwd",
                "m.inspector",
                "a" * 300,
                "v2\u0000.inspector",
                "models/../m.inspector",
                "%00",
                "~",
                "\\\\server\\share",
                "ab" * 32,
            ]
        )
    if choice == 6:
        return rng.choice(_NAMES)
    if choice == 7:
        return "x" * rng.randrange(0, 2000)
    if choice in (8, 9):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    return {rng.choice(_FIELDS): _value(rng, depth + 1) for _ in range(rng.randrange(0, 5))}


def _command(rng) -> dict:
    """A plausible command, then a few random edits of it."""
    data = {"cmd": rng.choice(_NAMES)}
    for _ in range(rng.randrange(0, 4)):
        key = rng.choice(_FIELDS)
        data[key] = _value(rng) if rng.random() < 0.6 else rng.choice([0.4, 0.5, True, "A-1", "m.inspector"])
    if rng.random() < 0.3:
        data["request_id"] = f"fuzz-{rng.randrange(10**6)}"
    return data


def fuzz_payloads(seed: int, count: int):
    """``count`` (leaf, payload) pairs: mutated commands, raw bytes, broken encodings, deep and wide nesting."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        leaf = rng.choice(["cmd", "cmd", "engineering"])
        kind = rng.randrange(10)
        if kind <= 3:
            text = json.dumps(_command(rng))
        elif kind == 4:
            text = json.dumps(_value(rng))
        elif kind == 5:  # textual damage: truncation, duplicate keys, NaN, trailing garbage
            text = json.dumps(_command(rng))
            text = rng.choice(
                [
                    text[: rng.randrange(len(text) + 1)],
                    text[:-1] + ', "cmd": "pause"}',
                    text.replace("0.5", "NaN"),
                    text + rng.choice(["}", "]", " x", "\u0000"]),
                    text.replace('"', "'"),
                ]
            )
        elif kind == 6:  # nesting, around and above the limit, both brackets
            depth = rng.choice([7, 8, 9, 50, 1000, 5000])
            opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
            text = '{"cmd": "pause", "x": ' + opener * depth + "1" + closer * depth + "}"
        elif kind == 7:  # other encodings of a valid command
            payload = json.dumps({"cmd": rng.choice(_NAMES[:6])}).encode(
                rng.choice(["utf-16", "utf-16-be", "utf-32", "utf-8-sig", "latin-1"])
            )
            out.append((leaf, payload))
            continue
        elif kind == 8:
            out.append((leaf, bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))))
            continue
        else:  # near and over the size limit
            text = json.dumps({"cmd": "pause", "x": "y" * rng.choice([16000, 16300, 16400, 40000])})
        out.append((leaf, text.encode("utf-8", "surrogatepass")))
    return out


ANSWERS = ("command_rejected", "command_accepted", "threshold_changed", "snapshot")


@pytest.mark.timeout(600)
def test_fuzzed_commands_never_mute_a_station(shared_broker, tmp_path, int8_bundle, frames):
    """3000 generated payloads (about 55 s on 2 cores; every kind of damage a few hundred times) in batches
    of 100; each gets exactly one answer, and the station still inspects and answers afterwards."""
    import shutil

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(int8_bundle, models / "m.inspector")
    payloads = fuzz_payloads(seed=16, count=3000)
    with LiveStation(shared_broker, tmp_path, models / "m.inspector", frames) as live:

        def answered(r):
            return sum(len(r.events(kind)) for kind in ANSWERS)

        sent = 0
        for start in range(0, len(payloads), 100):
            for leaf, payload in payloads[start : start + 100]:
                info = live.rec.client.publish(f"{live.base}/{leaf}", payload, qos=1)
                sent += 1
            info.wait_for_publish(30)
            live.rec.wait_for(lambda r, sent=sent: answered(r) >= sent, what=f"answers to {sent} payloads")
            assert live.thread.running and live.station.publisher.network_failed is None
        assert answered(live.rec) == len(payloads)  # exactly one answer each
        assert live.station.publisher.callback_errors == 0 and live.station.publisher.events_dropped == 0
        live.send(b'{"cmd": "resume"}')  # the fuzz may have paused it
        live.send(json.dumps({"cmd": "set_threshold", "threshold": 0.5, "override": True}).encode(), leaf="engineering")
        live.answers_and_inspects()
