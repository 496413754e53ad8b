"""The whole station against a real broker and a real INT8 bundle (``int8_bundle``): replay runs, broker
outage, a camera that goes away, triggered mode, hot reload, command validation, health events."""

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from edge.outbox import read_pending_ids
from inspector.bundle import Bundle
from inspector.camera import CameraReference
from inspector.exitcodes import ExitCode
from inspector.imageio import load_image
from inspector.inference import Classifier
from inspector.protocol.payloads import Result
from tests.fixtures_edge import StationThread, station_config

DOCS = Path(__file__).resolve().parents[1] / "docs" / "edge.md"


def _copy(images, folder: Path, names=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(images):
        target = folder / (names[i] if names else src.name)
        tmp = folder / f".{target.name}.tmp"
        shutil.copy(src, tmp)
        tmp.rename(target)  # appear complete in a watched folder


def _documented_result_keys() -> set:
    text = DOCS.read_text()
    block = re.search(r"### result.*?```json\n(.*?)```", text, re.S)
    assert block, "docs/edge.md has no result payload example"
    return set(json.loads(block.group(1)))


def test_folder_run_publishes_one_correct_result_per_image_in_order(shared_broker, tmp_path, int8_bundle, part_images):
    source = {"type": "folder", "path": str(part_images[0].parent)}
    reference = CameraReference(focus=1e9, mean=128)  # no real frame is this sharp: one camera_check event
    cfg = station_config(
        shared_broker,
        tmp_path,
        int8_bundle,
        source,
        overrides={"archive.pass_every": 1, "health.reference": reference.model_dump(), "health.every_n_frames": 3},
    )
    rec = shared_broker.subscriber([f"inspector/edgetest/{cfg.station}/#"])
    started = time.time()
    assert StationThread(cfg).start().wait(120) == ExitCode.OK

    rec.wait_for(lambda r: [m.text for m in r.on("status")][-1:] == ["offline"], what="offline")
    results = rec.results()
    assert [r["seq"] for r in results] == list(range(1, len(part_images) + 1))
    assert [r["frame"] for r in results] == [p.name for p in part_images]
    assert set(results[0]) == _documented_result_keys()

    reference_clf = Classifier(Bundle.load(int8_bundle))
    manifest = reference_clf.bundle.manifest
    for path, payload in zip(part_images, results):
        result = Result.model_validate(payload)
        expected = reference_clf.classify(load_image(path), order="rgb")
        assert result.scores == pytest.approx(expected.scores, abs=1e-5)
        assert result.verdict == manifest.decision.decide(result.defect_score).value == expected.verdict.value
        assert result.defect_score == pytest.approx(1 - result.scores[manifest.good_class], abs=1e-5)
        assert result.top_class == max(result.scores, key=result.scores.get)
        assert result.threshold == manifest.decision.threshold
        assert (result.model.name, result.model.version) == (manifest.name, manifest.version)
        assert result.model.sha256 == manifest.model_sha256[:12]
        assert (result.line, result.station, result.part_id) == ("edgetest", cfg.station, None)
        assert re.fullmatch(r"[0-9a-f]{32}", result.id)
        assert result.captured_at.endswith("Z") and started <= result.capture_ts <= time.time()
        assert result.inference_ms > 0
        assert Path(result.image).is_file() and Path(result.image).with_suffix(".json").is_file()
    assert len({r["id"] for r in results}) == len(results)

    stats = [m.json() for m in rec.on("stats")]
    assert stats and stats[-1]["frames_inspected"] == len(part_images)
    assert stats[-1]["passed"] + stats[-1]["failed"] + stats[-1]["review"] == len(part_images)
    assert stats[-1]["model_version"] == manifest.version and stats[-1]["inference_ms_p95"] > 0
    assert [e["type"] for e in rec.events() if e["type"] in ("started", "stopped")] == ["started", "stopped"]
    assert len(rec.events("camera_check")) == 1
    assert read_pending_ids(cfg.outbox.path) == []
    rec.close()


def test_broker_outage_mid_run_loses_no_result(mqtt_broker, tmp_path, int8_bundle, part_images):
    hot = tmp_path / "hot"
    hot.mkdir()
    cfg = station_config(
        mqtt_broker, tmp_path, int8_bundle, {"type": "folder", "path": str(hot), "watch": True, "poll_s": 0.05}
    )
    rec = mqtt_broker.subscriber([f"inspector/edgetest/{cfg.station}/result"], persistent=True)
    station = StationThread(cfg).start()
    try:
        _copy(part_images[:3], hot)
        rec.wait_for(lambda r: len(r.results()) == 3, what="results before the outage")
        mqtt_broker.stop()
        _copy(part_images[3:7], hot)  # inspected while the broker is away
        deadline = time.monotonic() + 30
        while len(read_pending_ids(cfg.outbox.path)) < 4:
            assert time.monotonic() < deadline, "results during the outage did not reach the outbox"
            time.sleep(0.05)
        if mqtt_broker.persistent:
            mqtt_broker.start()
        else:
            mqtt_broker.start_before([rec], [station.station.publisher.client])
        _copy(part_images[7:], hot)
        rec.wait_for(lambda r: len({m["id"] for m in r.results()}) == len(part_images), what="every result")
    finally:
        assert station.stop() == ExitCode.OK
    unique = list({m["id"]: m for m in rec.results()}.values())
    assert [m["seq"] for m in unique] == list(range(1, len(part_images) + 1))
    assert [m["frame"] for m in unique] == [p.name for p in part_images]
    rec.close()


def test_camera_that_stops_is_reconnected_and_the_events_are_published(
    shared_broker, tmp_path, int8_bundle, mjpeg_server
):
    source = {
        "type": "stream",
        "url": mjpeg_server.url,
        "open_timeout_s": 2,
        "read_timeout_s": 1,
        "stall_timeout_s": 1,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
    }
    cfg = station_config(shared_broker, tmp_path, int8_bundle, source)
    rec = shared_broker.subscriber([f"inspector/edgetest/{cfg.station}/#"])
    station = StationThread(cfg).start()
    try:
        rec.wait_for(lambda r: len(r.results()) >= 3, what="results from the live camera")
        mjpeg_server.stop()
        rec.wait_for(lambda r: r.events("camera_lost"), what="camera_lost")
        rec.wait_for(lambda r: any(m.json()["camera_state"] == "lost" for m in r.on("stats")), what="lost stats")
        mjpeg_server.start()
        rec.wait_for(lambda r: r.events("camera_restored"), what="camera_restored")
        count = len(rec.results())
        rec.wait_for(lambda r: len(r.results()) > count + 2, what="results after the camera came back")
    finally:
        assert station.stop() == ExitCode.OK
    order = [e["type"] for e in rec.events() if e["type"].startswith("camera_")]
    assert order == ["camera_lost", "camera_restored"]
    assert [r["seq"] for r in rec.results()] == list(range(1, len(rec.results()) + 1))
    rec.close()


def test_triggered_run_reports_the_right_part_ids(shared_broker, tmp_path, int8_bundle, part_images):
    cfg = station_config(
        shared_broker,
        tmp_path,
        int8_bundle,
        {"type": "folder", "path": str(part_images[0].parent)},
        overrides={"mode.type": "triggered"},
    )
    rec = shared_broker.subscriber([f"inspector/edgetest/{cfg.station}/#"])
    cmd = f"inspector/edgetest/{cfg.station}/cmd"
    station = StationThread(cfg).start()
    try:
        rec.wait_for(
            lambda r: r.events("started") and "online" in [m.text for m in r.on("status")], what="station online"
        )
        assert station.station.publisher.cmd_subscribed.wait(20)
        assert rec.results() == []  # nothing is inspected without a trigger
        parts = [f"P-{i:03d}" for i in range(1, 6)]
        sent = []
        for part in parts:
            sent.append(time.time())
            rec.publish(cmd, json.dumps({"cmd": "trigger", "part_id": part}))
        rec.wait_for(lambda r: len(r.results()) == 5, what="five triggered results")
    finally:
        assert station.stop() == ExitCode.OK
    results = rec.results()
    assert [r["part_id"] for r in results] == parts
    assert [r["frame"] for r in results] == [p.name for p in part_images[:5]]  # one image per trigger
    assert all(r["capture_ts"] >= t for r, t in zip(results, sent))  # the frame came after its trigger
    rec.close()


def test_interval_triggers_inspect_without_part_ids(shared_broker, tmp_path, int8_bundle, part_images):
    cfg = station_config(
        shared_broker,
        tmp_path,
        int8_bundle,
        {"type": "folder", "path": str(part_images[0].parent), "loop": True, "fps": 50},
        overrides={"mode.type": "triggered", "mode.interval_s": 0.2},
    )
    rec = shared_broker.subscriber([f"inspector/edgetest/{cfg.station}/result"])
    station = StationThread(cfg).start()
    try:
        rec.wait_for(lambda r: len(r.results()) >= 3, what="interval results")
    finally:
        assert station.stop() == ExitCode.OK
    results = rec.results()
    assert all(r["part_id"] is None for r in results)
    assert [r["seq"] for r in results] == list(range(1, len(results) + 1))
    rec.close()


def _bundle_copy(src: Path, dest: Path, version: str) -> Path:
    bundle = Bundle.load(src)
    manifest = bundle.manifest.model_copy(update={"version": version})
    return Bundle.create(manifest, bundle.model).save(dest)


def test_reload_switches_to_a_good_bundle_and_keeps_the_old_one_on_a_corrupt_bundle(
    shared_broker, tmp_path, int8_bundle, part_images
):
    models = tmp_path / "models"
    models.mkdir()
    current = _bundle_copy(int8_bundle, models / "v1.inspector", "v1")
    _bundle_copy(int8_bundle, models / "v2.inspector", "v2")
    corrupt = models / "broken.inspector"
    data = bytearray((models / "v2.inspector").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the compressed model
    corrupt.write_bytes(bytes(data))
    cfg = station_config(
        shared_broker,
        tmp_path,
        current,
        {"type": "folder", "path": str(part_images[0].parent), "loop": True, "fps": 20},
    )
    rec = shared_broker.subscriber([f"inspector/edgetest/{cfg.station}/#"])
    cmd = f"inspector/edgetest/{cfg.station}/engineering"
    station = StationThread(cfg).start()

    def newest_version(r):
        return r.results()[-1]["model"]["version"] if r.results() else None

    try:
        rec.wait_for(lambda r: newest_version(r) == "v1", what="v1 results")
        assert station.station.publisher.cmd_subscribed.wait(20)
        rec.publish(cmd, json.dumps({"cmd": "reload", "bundle": "v2.inspector", "request_id": "r1"}))
        rec.wait_for(lambda r: r.events("model_reloaded"), what="model_reloaded")
        rec.wait_for(lambda r: newest_version(r) == "v2", what="v2 results")
        rec.publish(cmd, json.dumps({"cmd": "reload", "bundle": "broken.inspector", "request_id": "r2"}))
        rec.wait_for(lambda r: r.events("model_reload_failed"), what="model_reload_failed")
        rec.publish(cmd, json.dumps({"cmd": "reload", "bundle": "v1.inspector", "sha256": "0" * 64}))
        rec.wait_for(lambda r: len(r.events("model_reload_failed")) == 2, what="sha256 mismatch")
        count = len(rec.results())
        rec.wait_for(lambda r: len(r.results()) > count + 3, what="results after the failed reloads")
    finally:
        assert station.stop() == ExitCode.OK
    reloaded = rec.events("model_reloaded")[0]
    assert reloaded["details"]["previous"]["version"] == "v1" and reloaded["details"]["model"]["version"] == "v2"
    assert reloaded["details"]["request_id"] == "r1"
    assert (reloaded["details"]["before"]["version"], reloaded["details"]["after"]["version"]) == ("v1", "v2")
    failed, mismatch = rec.events("model_reload_failed")
    assert failed["details"]["request_id"] == "r2" and "corrupt" in failed["details"]["error"].lower()
    assert "SHA-256" in mismatch["details"]["error"]
    versions = [r["model"]["version"] for r in rec.results()]
    switch = versions.index("v2")
    assert set(versions[:switch]) == {"v1"} and set(versions[switch:]) == {"v2"}  # swapped once, between parts
    rec.close()


def test_malformed_commands_are_rejected_and_change_nothing(shared_broker, tmp_path, int8_bundle, part_images):
    (tmp_path / "models").mkdir()
    shutil.copy(int8_bundle, tmp_path / "models" / "m.inspector")
    outside = tmp_path / "elsewhere.inspector"
    shutil.copy(int8_bundle, outside)
    cfg = station_config(
        shared_broker,
        tmp_path,
        tmp_path / "models" / "m.inspector",
        {"type": "folder", "path": str(part_images[0].parent), "loop": True, "fps": 20},
    )
    rec = shared_broker.subscriber([f"inspector/edgetest/{cfg.station}/#"])
    cmd = f"inspector/edgetest/{cfg.station}/cmd"
    engineering = f"inspector/edgetest/{cfg.station}/engineering"
    station = StationThread(cfg).start()
    bad = [
        b"{this is not json",
        b"\x00\x01\x02",
        b'["trigger"]',
        b'{"cmd": "format_disk"}',
        b'{"cmd": "set_threshold", "threshold": "0.1"}',
        b'{"cmd": "set_threshold", "threshold": 7}',
        b'{"cmd": "pause", "until": "forever"}',
        (engineering, json.dumps({"cmd": "reload", "bundle": str(outside)}).encode()),
        (engineering, b'{"cmd": "reload", "bundle": "../elsewhere.inspector"}'),
        b'{"cmd": "trigger", "part_id": "X"}',  # valid JSON, but the station runs in continuous mode
    ]
    try:
        rec.wait_for(lambda r: len(r.results()) >= 2, what="first results")
        threshold = rec.results()[-1]["threshold"]
        assert station.station.publisher.cmd_subscribed.wait(20)
        for payload in bad:
            topic, payload = payload if isinstance(payload, tuple) else (cmd, payload)
            rec.publish(topic, payload)
        rec.wait_for(lambda r: len(r.events("command_rejected")) == len(bad), what="every rejection")
        count = len(rec.results())
        rec.wait_for(lambda r: len(r.results()) > count + 3, what="results after the bad commands")
        assert station.running
        assert {r["threshold"] for r in rec.results()} == {threshold}
        assert all(r["model"]["version"] == rec.results()[0]["model"]["version"] for r in rec.results())

        rec.publish(
            engineering,
            b'{"cmd": "set_threshold", "threshold": 0.999, "review_low": 0.99, "review_high": 1.0, "override": true}',
        )
        rec.wait_for(lambda r: r.results()[-1]["threshold"] == 0.999, what="new threshold in results")
        rec.publish(cmd, b'{"cmd": "pause"}')
        rec.wait_for(lambda r: any(e["message"] == "paused" for e in r.events("command_accepted")))
        time.sleep(0.5)
        paused_at = len(rec.results())
        time.sleep(1.0)
        assert len(rec.results()) == paused_at
        rec.publish(cmd, b'{"cmd": "snapshot", "request_id": "s1"}')
        rec.wait_for(lambda r: r.events("snapshot"), what="snapshot")
        rec.publish(cmd, b'{"cmd": "resume"}')
        rec.wait_for(lambda r: len(r.results()) > paused_at + 2, what="results after resume")
    finally:
        assert station.stop() == ExitCode.OK
    reasons = [e["details"]["reason"] for e in rec.events("command_rejected")]
    assert "not valid JSON" in reasons[0] and "unknown command 'format_disk'" in reasons[3]
    assert "threshold: Input should be a valid number" in reasons[4]
    assert "outside the models directory" in reasons[7] and "outside the models directory" in reasons[8]
    assert "continuous mode" in reasons[9]
    snapshot = Path(rec.events("snapshot")[0]["details"]["path"])
    assert snapshot.is_file() and snapshot.parent == tmp_path / "snapshots"
    rec.close()


def test_replay_with_the_broker_away_fills_the_bounded_outbox_and_exits_undelivered(
    mqtt_broker, tmp_path, int8_bundle, part_images
):
    mqtt_broker.stop()
    cfg = station_config(
        mqtt_broker,
        tmp_path,
        int8_bundle,
        {"type": "folder", "path": str(part_images[0].parent)},
        overrides={"outbox.max_results": 10, "outbox.drain_timeout_s": 0.5},
    )
    images = part_images + part_images[:5]
    folder = tmp_path / "fifteen"
    _copy(images, folder, names=[f"{i:03d}.png" for i in range(len(images))])
    cfg.source.path = folder
    assert StationThread(cfg).start().wait(120) == ExitCode.UNDELIVERED
    pending = read_pending_ids(cfg.outbox.path)
    assert len(pending) == 10  # the oldest five were dropped to respect the bound
    import sqlite3

    seqs = [r[0] for r in sqlite3.connect(cfg.outbox.path).execute("SELECT seq FROM results ORDER BY rowid")]
    assert seqs == list(range(6, 16))


def test_station_with_a_gstreamer_source_on_an_opencv_without_it_exits_4(shared_broker, tmp_path, int8_bundle):
    from edge.sources import gstreamer_available

    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer")
    cfg = station_config(shared_broker, tmp_path, int8_bundle, {"type": "gstreamer", "preset": "rpi_libcamera"})
    rec = shared_broker.subscriber([f"inspector/edgetest/{cfg.station}/event"])
    assert StationThread(cfg).start().wait(60) == ExitCode.SOURCE
    rec.wait_for(lambda r: r.events("error"), what="error event")
    assert "without GStreamer" in rec.events("error")[0]["message"]
    rec.close()


def test_unloadable_bundle_exits_3(shared_broker, tmp_path):
    bad = tmp_path / "bad.inspector"
    bad.write_bytes(b"not a zip")
    cfg = station_config(shared_broker, tmp_path, bad, {"type": "folder", "path": str(tmp_path)})
    assert StationThread(cfg).start().wait(60) == ExitCode.MODEL


def test_unreadable_frames_are_reported_and_skipped(shared_broker, tmp_path, int8_bundle, part_images):
    folder = tmp_path / "mixed"
    _copy(part_images[:2], folder)
    (folder / f"{part_images[0].stem}_z.png").write_bytes(b"\x89PNG\r\n\x1a\ncut")
    cfg = station_config(shared_broker, tmp_path, int8_bundle, {"type": "folder", "path": str(folder)})
    rec = shared_broker.subscriber([f"inspector/edgetest/{cfg.station}/#"])
    assert StationThread(cfg).start().wait(60) == ExitCode.OK
    rec.wait_for(lambda r: len(r.results()) == 2 and r.events("error"))
    assert "truncated PNG" in rec.events("error")[0]["message"]
    rec.close()
