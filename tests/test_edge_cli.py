"""``inspector run`` as a real process: SIGKILL and restart, the last will, SIGTERM, exit codes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from edge.outbox import read_pending_ids
from tests.fixtures_edge import drop_files

ROOT = Path(__file__).resolve().parents[1]


def _images(synth_root, count):
    return sorted(synth_root.glob("*/*.png"))[:count]


def _drop(images, folder: Path, first: int) -> None:
    """Write images into a watched folder under increasing names (part_0000.png, ...), each appearing complete."""
    drop_files(images, folder, [f"part_{i:04d}.png" for i in range(first, first + len(images))])


def _config(broker, tmp_path, bundle, station, source, **extra) -> Path:
    data = {
        "line": "clitest",
        "station": station,
        "bundle": str(bundle),
        "source": source,
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "protocol": broker.protocol,
            "keepalive_s": 5,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            "stats_interval_s": 1.0,
        },
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "drain_timeout_s": 5},
        "archive": {"path": str(tmp_path / "archive")},
    }
    data.update(extra)
    path = tmp_path / f"{station}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _start(config: Path, *args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--config", str(config), *args],
        cwd=config.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_pending(outbox: Path, count: int, timeout: float = 60.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        ids = read_pending_ids(outbox) if outbox.exists() else []
        if len(ids) >= count:
            return ids
        assert time.monotonic() < deadline, f"outbox holds {len(ids)} of {count}"
        time.sleep(0.05)


def _statuses(rec):
    return [m.text for m in rec.on("status")]


def test_sigkill_then_restart_delivers_the_unacknowledged_and_the_last_will_appears(
    mqtt_broker, tmp_path, int8_bundle, synth_root
):
    hot, hot2 = tmp_path / "hot", tmp_path / "hot2"
    hot.mkdir()
    hot2.mkdir()
    station = "killme"
    config = _config(
        mqtt_broker, tmp_path, int8_bundle, station, {"type": "folder", "path": str(hot), "watch": True, "poll_s": 0.05}
    )
    rec = mqtt_broker.subscriber([f"inspector/clitest/{station}/#"], persistent=True)
    images = _images(synth_root, 8)
    proc = _start(config)
    try:
        rec.wait_for(lambda r: "online" in _statuses(r), what="online")
        _drop(images[:3], hot, 0)
        rec.wait_for(lambda r: len(r.results()) == 3, what="three results")

        mqtt_broker.stop()
        _drop(images[3:7], hot, 3)  # inspected, committed to the outbox, never acknowledged
        unacked = _wait_pending(tmp_path / "outbox.sqlite", 4)
        proc.kill()
        assert proc.wait(30) == -signal.SIGKILL

        subscriptions = rec.subscriptions
        mqtt_broker.start()
        rec.wait_resubscribed(subscriptions)
        proc = _start(config, "--set", f"source.path={hot2}")
        rec.wait_for(lambda r: set(unacked) <= {m["id"] for m in r.results()}, what="unacknowledged results")
        _drop(images[7:8], hot2, 7)
        rec.wait_for(lambda r: any(m["seq"] == 8 for m in r.results()), what="a new result after restart")

        rec.wait_for(lambda r: _statuses(r)[-1:] == ["online"], what="online again")
        proc.kill()  # dies while connected: the broker publishes the last will
        assert proc.wait(30) == -signal.SIGKILL
        rec.wait_for(lambda r: _statuses(r)[-1:] == ["offline"], what="last will")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    unique = list({m["id"]: m for m in rec.results()}.values())
    assert [m["seq"] for m in unique] == list(range(1, 9))  # nothing lost, numbering continued
    assert [m["frame"] for m in unique] == [f"part_{i:04d}.png" for i in range(8)]
    later = mqtt_broker.subscriber([f"inspector/clitest/{station}/status"])
    later.wait_for(lambda r: r.on("status"), what="retained status")
    assert [(m.text, m.retain) for m in later.on("status")] == [("offline", True)]
    rec.close()
    later.close()


def test_sigterm_finishes_cleanly_with_exit_0_offline_and_json_logs(shared_broker, tmp_path, int8_bundle, synth_root):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _drop(_images(synth_root, 4), folder, 0)
    station = "termme"
    config = _config(
        shared_broker,
        tmp_path,
        int8_bundle,
        station,
        {"type": "folder", "path": str(folder), "loop": True, "fps": 10},
        log={"level": "info", "format": "json"},
    )
    rec = shared_broker.subscriber([f"inspector/clitest/{station}/#"])
    proc = _start(config)
    try:
        rec.wait_for(lambda r: len(r.results()) >= 3, what="results")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    rec.wait_for(lambda r: _statuses(r)[-1:] == ["offline"] and r.events("stopped"), what="offline")
    assert rec.events("stopped")[0]["details"]["reason"] == "SIGTERM"
    logs = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(entry["msg"] == "stopping: SIGTERM" for entry in logs)
    assert all({"ts", "level", "logger", "msg"} <= set(entry) for entry in logs)
    seqs = [m["seq"] for m in rec.results()]
    assert seqs == list(range(1, len(seqs) + 1))
    assert read_pending_ids(tmp_path / "outbox.sqlite") == []  # drained before exiting
    rec.close()


def test_configuration_errors_exit_2_and_name_the_key(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    missing = subprocess.run(
        [sys.executable, "-m", "app.cli", "run", "--source", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "missing required key 'bundle'" in missing.stderr
    typo = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "run",
            "--bundle",
            "b.inspector",
            "--source",
            str(tmp_path),
            "--set",
            "mqtt.prot=1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert typo.returncode == 2 and "unknown key 'mqtt.prot'" in typo.stderr


def test_print_config_round_trips(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "run",
            "--bundle",
            "m.inspector",
            "--source",
            "0",
            "--broker",
            "broker.local:8883",
            "--station",
            "cam9",
            "--print-config",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "station.yaml").write_text(proc.stdout)
    from edge.config import load_station_config

    cfg = load_station_config(tmp_path / "station.yaml")
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.station, cfg.source.type) == ("broker.local", 8883, "cam9", "usb")


def _run_verbose(config: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "-v", "run", "--config", str(config)],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_folder_run_prints_each_part_and_a_summary(shared_broker, tmp_path, int8_bundle, synth_root):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _drop(_images(synth_root, 3), folder, 0)
    (folder / "part_9999.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    done = _run_verbose(_config(shared_broker, tmp_path, int8_bundle, "talks", {"type": "folder", "path": str(folder)}))
    assert done.returncode == 0, done.stderr
    parts = [line for line in done.stdout.splitlines() if line.split()[:1] in (["pass"], ["fail"], ["review"])]
    assert [line.split()[3] for line in parts] == [f"part_{i:04d}.png" for i in range(3)]
    assert "3 part(s):" in done.stdout and "1 frame(s) skipped" in done.stdout
    assert "skipped 1: unreadable" in done.stdout


def test_every_frame_skipped_exits_non_zero_and_an_absent_broker_is_named(tmp_path, int8_bundle, synth_root):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    absent = type("Absent", (), {"host": "127.0.0.1", "port": port, "protocol": "5"})()
    config = _config(absent, tmp_path, int8_bundle, "alone", {"type": "folder", "path": str(folder)})
    done = _run_verbose(config)
    assert done.returncode == 4, done.stderr
    assert "every one of the 1 frame(s) was skipped" in done.stderr and "0 part(s)" in done.stdout
    (folder / "a.png").unlink()
    _drop(_images(synth_root, 1), folder, 0)
    data = yaml.safe_load(config.read_text())
    data["outbox"]["drain_timeout_s"] = 0.5
    config.write_text(yaml.safe_dump(data))
    done = _run_verbose(config)
    assert done.returncode == 6, done.stderr  # a replay that ended with its result still queued
    assert f"waiting for broker 127.0.0.1:{port}" in done.stderr and "1 part(s)" in done.stdout


def test_no_tflite_runtime_is_said_plainly_with_what_to_install(tmp_path):
    """The station checks its runtime before anything else: exit 3 and a plain message, not a JSON log line."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "run", "--bundle", "m.inspector", "--source", str(tmp_path)]
        + ["--set", "inference.backend=tflite_runtime", "--set", "log.format=json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3
    first = proc.stderr.splitlines()[0]
    assert first.startswith("inspector run: cannot run the model: no TFLite runtime could be imported"), proc.stderr
    assert "pip install" in proc.stderr


def test_runtime_advice_names_what_exists_for_the_board():
    from edge.cli import runtime_advice

    bookworm32 = runtime_advice("armv7l", (3, 11))
    assert "64-bit Raspberry Pi OS" in bookworm32 and "Python 3.11" in bookworm32
    assert 'tflite-runtime "numpy<2"' in runtime_advice("armv7l", (3, 9))
    assert "ai-edge-litert" in runtime_advice("aarch64", (3, 10))
