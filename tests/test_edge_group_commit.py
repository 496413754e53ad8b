"""Group commit: a result is published before its disk sync, and a SIGKILL at that moment loses nothing.

The process owning the outbox is wired like the station (:class:`edge.outbox.Outbox`,
:class:`edge.outbox.OutboxWriter`, :class:`edge.publisher.Publisher`), with a group-commit interval of an
hour, so no sync can happen while the test runs: the outbox's own figures show every result of the test
written and unsynced when the process is killed. A crash keeps what reached the operating system; only a
power cut needs the sync (docs/edge.md, Delivery guarantee per failure).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge.outbox import read_pending_ids

ROOT = Path(__file__).resolve().parents[1]

OWNER = textwrap.dedent("""
    import json, sys, time, uuid
    from edge.outbox import Outbox, OutboxWriter
    from edge.publisher import Publisher
    from inspector.mqtt import MqttConfig
    from inspector.protocol.topics import StationTopics

    path, host, port, protocol, interval = sys.argv[1:6]
    topics = StationTopics("inspector", "gctest", "owner")
    box = Outbox(path, group_commit_s=float(interval))
    cfg = MqttConfig(host=host, port=int(port), protocol=protocol, reconnect_min_s=0.2, reconnect_max_s=1.0)
    pub = Publisher(cfg, topics, f"gc-owner-{uuid.uuid4().hex[:6]}", box, on_command=lambda *a: None)
    writer = OutboxWriter(box, lambda queued: pub.notify())
    pub.start()

    def report(**extra):
        d = box.durability()
        print(json.dumps({"syncs": d.syncs, "unsynced": d.unsynced, "depth": box.depth(), **extra}), flush=True)

    for line in sys.stdin:
        words = line.split()
        if words[0] == "add":
            ids, first = [], box.last_seq + 1
            for seq in range(first, first + int(words[1])):
                ids.append(uuid.uuid4().hex)
                writer.submit(ids[-1], seq, topics.result, json.dumps({"id": ids[-1], "seq": seq}))
            while box.last_seq < first + len(ids) - 1:  # committed by the writer thread
                time.sleep(0.01)
            report(ids=ids)
        elif words[0] == "report":
            report()
    writer.close()
    pub.flush(10.0)
    pub.stop()
    box.close()
""")


def _owner(broker, path: Path, interval: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", OWNER, str(path), broker.host, str(broker.port), broker.protocol, str(interval)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _ask(proc: subprocess.Popen, command: str) -> dict:
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    assert line, f"the outbox owner died (exit code {proc.poll()})"
    return json.loads(line)


def test_sigkill_after_publishing_but_before_the_sync_loses_nothing(mqtt_broker, tmp_path):
    path = tmp_path / "outbox.sqlite"
    rec = mqtt_broker.subscriber(["inspector/gctest/owner/result"], persistent=True)
    proc = _owner(mqtt_broker, path, interval=3600.0)
    try:
        published = _ask(proc, "add 5")["ids"]
        rec.wait_for(lambda r: {m["id"] for m in r.results()} >= set(published), what="published results")
        state = _ask(proc, "report")
        assert state["syncs"] == 0 and state["unsynced"] >= 1  # published, and not one sync yet

        mqtt_broker.stop()
        queued = _ask(proc, "add 5")  # written, not published (no broker), not synced
        assert queued["syncs"] == 0 and queued["depth"] >= 5
        assert set(queued["ids"]) <= set(read_pending_ids(path))  # another process sees the unsynced rows
        proc.kill()
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    subscriptions = rec.subscriptions
    mqtt_broker.start()
    rec.wait_resubscribed(subscriptions)
    proc = _owner(mqtt_broker, path, interval=0.05)
    try:
        rec.wait_for(lambda r: {m["id"] for m in r.results()} >= set(queued["ids"]), what="the queued results")
        after = _ask(proc, "add 1")["ids"]
        rec.wait_for(lambda r: after[0] in {m["id"] for m in r.results()}, what="a result after the restart")
        proc.stdin.close()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    unique = list({m["id"]: m for m in rec.results()}.values())  # at-least-once: repeats are dropped by id
    assert [m["id"] for m in unique] == published + queued["ids"] + after  # nothing lost, in order
    assert [m["seq"] for m in unique] == list(range(1, 12))  # numbering continued after the kill
    assert read_pending_ids(path) == []
    rec.close()


def test_the_group_commit_interval_is_a_typed_key_with_a_bounded_value(tmp_path):
    from edge.config import load_station_config
    from edge.outbox import DEFAULT_GROUP_COMMIT_S
    from inspector.config import ConfigError

    base = {"bundle": "model.inspector", "source": {"type": "folder", "path": str(tmp_path)}}
    assert load_station_config(None, base).outbox.group_commit_s == DEFAULT_GROUP_COMMIT_S == 0.05
    assert load_station_config(None, {**base, "outbox.group_commit_s": 0.2}).outbox.group_commit_s == 0.2
    for bad in (0, -1, 11, "soon"):
        with pytest.raises(ConfigError, match=r"outbox\.group_commit_s"):
            load_station_config(None, {**base, "outbox.group_commit_s": bad})
