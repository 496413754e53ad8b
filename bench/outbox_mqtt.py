"""Benchmark 4: results through the durable outbox, alone and to Mosquitto at QoS 1, and the drain after an outage.

Uses the station's own wiring: :class:`edge.outbox.Outbox` (group commit: a result is published as soon
as it is written, a background sync makes each group survive a power cut), :class:`edge.outbox.OutboxWriter`
(the inspection loop's hand-off) and :class:`edge.publisher.Publisher` (default MQTT settings: MQTT 5, 20
results in flight), with realistic result payloads (:class:`inspector.protocol.payloads.Result` JSON, six
class scores, about 600 bytes). Every timing comes with the load average (``context``): the machine is
shared.

* **outbox alone** - the writer commits N results as fast as one thread submits them while a drain in the
  same process acknowledges each one as soon as it is written (what a broker that acknowledges at once
  would do); reported: results/s from the first submit until every result is acknowledged, deleted and
  synced, for ``synchronous=full`` (group commit, as shipped), ``normal``, and ``per_result_sync`` (a disk
  sync for every result before the next, what ``full`` did before group commit), plus the power-cut window.
* **through to PUBACK** - the same to the production-configured Mosquitto on loopback, a persistent-session
  subscriber counting results by id ("nothing lost" is checked, not assumed); reported: submit rate,
  results/s to the last PUBACK, submit-to-subscriber latency, and the power-cut window. The shipped broker
  saves its queues after every change, so here the broker sets the pace, not the outbox.
* **paced latency** - 30 results/s (a fast station, below the broker's limit) to the same broker; reported:
  latency p50/p99 from submit to the drain handing the result to paho (the station's part) and to the
  subscriber (including the broker, which saves its queues to disk after every change), with the shipped group commit (published when written) and with
  each result published only after its disk sync (the behaviour before group commit), and the power-cut
  window of each.
* **outage drain** - the broker is stopped, 10,000 results are queued, the broker is started again;
  reported: time to reconnect, and the drain rate from the first to the last result arriving.

The power-cut window is :attr:`edge.outbox.Durability.max_unsynced_s`: the longest time a written result
(so possibly published and not yet acknowledged) waited for the disk sync that makes it survive a power
cut, measured by the outbox itself under the load of the run.

Full: N = 20,000 alone, 2,000 through the broker per mode, 1,200 paced (40 s). Quick: 5,000, 500 and 300
(10 s); the outage always queues 10,000.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from bench.broker import Counter, ProductionBroker
from bench.common import WORK, context, log, summary, write_result

NAME = "outbox"
OUTAGE_RESULTS = 10_000
LINE = "line"
GROUP_COMMIT_S = 0.05  # the shipped default (edge.config.OutboxConfig.group_commit_s)
PACED_RATE = 30.0  # results/s of the latency runs: a fast station, well below the shipped broker's limit


def _payload(station: str, seq: int, rid: str) -> str:
    from inspector.protocol.payloads import ModelRef, Result

    scores = {"free": 0.91, "blowhole": 0.02, "break": 0.01, "crack": 0.03, "fray": 0.02, "uneven": 0.01}
    now = time.time()
    return Result(
        id=rid,
        seq=seq,
        line=LINE,
        station=station,
        verdict="pass",
        defect_score=0.09,
        threshold=0.5,
        top_class="free",
        top_score=0.91,
        scores=scores,
        model=ModelRef(name="bench", version="1", sha256="0" * 12),
        captured_at="2025-01-01T00:00:00.000Z",
        capture_ts=now,
        inference_ms=21.5,
        preprocess_ms=0.8,
        frame=f"bench.avi#{seq}",
    ).to_json()


def _durability(box) -> dict:
    d = box.durability()
    return {
        "syncs": d.syncs,
        "power_cut_window_ms": round(1000 * d.max_unsynced_s, 1),
        "max_sync_ms": round(1000 * d.max_sync_s, 1),
    }


def _load() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Station:
    """An outbox, its writer and a publisher as the station wires them, without camera or model."""

    def __init__(self, broker, workdir: Path, synchronous: str, sync_before_publish: bool = False):
        from edge.outbox import Outbox, OutboxWriter
        from edge.publisher import Publisher
        from inspector.mqtt import MqttConfig
        from inspector.protocol.topics import StationTopics

        self.name = f"ob-{uuid.uuid4().hex[:6]}"
        self.topics = StationTopics("bench", LINE, self.name)
        self.outbox = Outbox(workdir / f"{self.name}.sqlite", synchronous=synchronous, group_commit_s=GROUP_COMMIT_S)
        cfg = MqttConfig(
            host=broker.host, port=broker.port, protocol="5", prefix="bench", reconnect_min_s=0.2, reconnect_max_s=1.0
        )
        self.publisher = Publisher(cfg, self.topics, f"bench-{self.name}", self.outbox, on_command=lambda *a: None)
        self.writer = OutboxWriter(self.outbox, self._committed)
        self._sync_before_publish = sync_before_publish
        self.ids: List[str] = []
        self.handed: Dict[str, float] = {}  # result id -> when the drain handed it to paho (first time)
        publish = self.publisher.client.publish

        def timed_publish(topic, payload=None, *args, **kwargs):
            if topic == self.topics.result:
                self.handed.setdefault(json.loads(payload)["id"], time.time())
            return publish(topic, payload, *args, **kwargs)

        self.publisher.client.publish = timed_publish  # type: ignore[method-assign]

    def _committed(self, queued) -> None:
        if self._sync_before_publish:  # the behaviour before group commit: the disk first, then MQTT
            self.outbox.sync()
        self.publisher.notify()

    def start(self, timeout: float = 10.0) -> None:
        self.publisher.start()
        deadline = time.monotonic() + timeout
        while not self.publisher.connected:
            if time.monotonic() > deadline:
                raise RuntimeError("publisher did not connect")
            time.sleep(0.01)

    def add(self, n: int, rate: Optional[float] = None) -> float:
        """Submit ``n`` results as fast as the inspection loop could, or ``rate`` per second; returns the
        seconds it took."""
        start = time.perf_counter()
        seq = self.outbox.last_seq
        for i in range(n):
            if rate is not None:
                time.sleep(max(start + i / rate - time.perf_counter(), 0.0))
            rid = uuid.uuid4().hex
            seq += 1
            self.writer.submit(rid, seq, self.topics.result, _payload(self.name, seq, rid))
            self.ids.append(rid)
        return time.perf_counter() - start

    def wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.outbox.depth() > 0 or self.outbox.last_seq < len(self.ids):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def stop(self) -> None:
        self.writer.close()
        self.publisher.stop()
        self.outbox.close()


def _delivery(counter: Counter, station: Station, timeout: float) -> dict:
    """Wait until every id arrived at the subscriber; count missing ones and repeats."""
    counter.wait_count(station.topics.result, len(station.ids), timeout)
    seen = counter.ids(station.topics.result)
    missing = [i for i in station.ids if i not in seen]
    return {
        "sent": len(station.ids),
        "received_unique": len(seen),
        "missing": len(missing),
        "duplicates": sum(c - 1 for c in seen.values()),
        "nothing_lost": not missing,
    }


def alone(workdir: Path, n: int, mode: str) -> dict:
    """The outbox without a network: a drain acknowledges every result as soon as it is written."""
    from edge.outbox import Outbox, OutboxWriter

    synchronous = "normal" if mode == "normal" else "full"
    box = Outbox(
        workdir / f"alone-{mode}-{uuid.uuid4().hex[:6]}.sqlite",
        synchronous=synchronous,
        group_commit_s=3600.0 if mode == "per_result_sync" else GROUP_COMMIT_S,
    )
    payloads = [_payload("alone", seq, uuid.uuid4().hex) for seq in range(1, 101)]
    wake = threading.Event()
    fed = threading.Event()
    acked = [0]

    def drain() -> None:  # as edge.publisher does: read what was written after the cursor, acknowledge it
        cursor = 0
        while not (fed.is_set() and box.depth() == 0):
            wake.wait(0.05)
            wake.clear()
            rows = box.pending(after=cursor, limit=500)
            if rows:
                cursor = rows[-1].rowid
                acked[0] += box.ack([r.rowid for r in rows])

    thread = threading.Thread(target=drain, name="bench-drain")
    load_start = _load()
    start = time.perf_counter()
    thread.start()
    if mode == "per_result_sync":
        for seq in range(1, n + 1):
            box.add(uuid.uuid4().hex, seq, "bench/t/result", payloads[seq % 100])
            box.sync()  # the result waits for its own sync before the next one, as before group commit
            wake.set()
    else:
        writer = OutboxWriter(box, lambda queued: wake.set())
        for seq in range(1, n + 1):
            writer.submit(uuid.uuid4().hex, seq, "bench/t/result", payloads[seq % 100])
        writer.close(600)
    submitted_s = time.perf_counter() - start
    fed.set()
    wake.set()
    thread.join()
    box.sync()  # everything acknowledged and on disk
    total_s = time.perf_counter() - start
    out = {
        "mode": mode,
        "results": n,
        "submit_per_s": round(n / submitted_s, 1),
        "results_per_s": round(n / total_s, 1),
        "seconds": round(total_s, 2),
        "acknowledged": acked[0],
        "left_in_outbox": box.depth(),
        **_durability(box),
        "load_average": {"start": load_start, "end": _load()},
    }
    box.close()
    log(
        f"outbox alone {mode}: {out['results_per_s']:.0f} results/s written, acknowledged and synced; "
        f"power-cut window {out['power_cut_window_ms']} ms, load {out['load_average']['end'][0]}"
    )
    return out


@contextmanager
def _subscribed_station(
    broker, workdir: Path, synchronous: str, sync_before_publish: bool = False
) -> Iterator[Tuple[Station, Counter, List[float]]]:
    """A connected :class:`Station`, a persistent-session subscriber counting its results, and the load average
    once both are up; both are stopped after the ``with`` block."""
    station = Station(broker, workdir, synchronous, sync_before_publish=sync_before_publish)
    counter = Counter(broker, [station.topics.result], persistent=True).start()
    try:
        station.start()
        yield station, counter, _load()
    finally:
        station.stop()
        counter.stop()


def _wait_drained(station: Station, after: str = "after 600 s") -> None:
    if not station.wait_empty(600):
        raise RuntimeError(f"outbox still holds {station.outbox.depth()} results {after}")


def _synced_durability(station: Station) -> dict:
    """The power-cut window and syncs once everything acknowledged is also on disk."""
    station.outbox.sync()
    return _durability(station.outbox)


def throughput(broker, workdir: Path, n: int, synchronous: str) -> dict:
    with _subscribed_station(broker, workdir, synchronous) as (station, counter, load_start):
        start = time.perf_counter()
        add_s = station.add(n)
        _wait_drained(station)
        total_s = time.perf_counter() - start
        delivery = _delivery(counter, station, 60)
        durability = _synced_durability(station)
    out = {
        "synchronous": synchronous,
        "results": n,
        "add_per_s": round(n / add_s, 1),
        "add_ms": round(1000 * add_s / n, 3),
        "acked_per_s": round(n / total_s, 1),
        "seconds": round(total_s, 2),
        **durability,
        "load_average": {"start": load_start, "end": _load()},
        **delivery,
    }
    log(
        f"outbox {synchronous} to PUBACK: submit {out['add_per_s']:.0f}/s, through {out['acked_per_s']:.0f}/s, "
        f"power-cut window {out['power_cut_window_ms']} ms, lost {delivery['missing']}"
    )
    return out


def paced(broker, workdir: Path, n: int, rate: float, sync_before_publish: bool) -> dict:
    """Results at a station's pace (below the broker's limit): how long from submit to the subscriber."""
    with _subscribed_station(broker, workdir, "full", sync_before_publish) as (station, counter, load_start):
        station.add(n, rate)
        _wait_drained(station)
        delivery = _delivery(counter, station, 60)
        arrivals = counter.messages(station.topics.result)
        latency = [t - p["capture_ts"] for t, p in arrivals]
        to_paho = [station.handed[p["id"]] - p["capture_ts"] for _, p in arrivals if p["id"] in station.handed]
        durability = _synced_durability(station)
    out = {
        "publish": "after the disk sync (before group commit)" if sync_before_publish else "when written (shipped)",
        "rate_per_s": rate,
        "results": n,
        "submit_to_publish_ms": summary(to_paho),
        "submit_to_subscriber_ms": summary(latency),
        **durability,
        "load_average": {"start": load_start, "end": _load()},
        **delivery,
    }
    log(
        f"paced {rate:g}/s, publish {out['publish']}: submit to publish p50 {out['submit_to_publish_ms']['p50']} "
        f"ms, p99 {out['submit_to_publish_ms']['p99']} ms; to subscriber p50 "
        f"{out['submit_to_subscriber_ms']['p50']} ms, p99 {out['submit_to_subscriber_ms']['p99']} ms, "
        f"power-cut window {out['power_cut_window_ms']} ms"
    )
    return out


def outage(broker, workdir: Path, n: int) -> dict:
    with _subscribed_station(broker, workdir, "full") as (station, counter, load_start):
        broker.stop()
        add_s = station.add(n)
        while station.outbox.last_seq < n:  # the writer has committed everything
            time.sleep(0.01)
        queued = station.outbox.depth()
        restart = time.time()
        broker.start()
        _wait_drained(station, "600 s after the restart")
        emptied = time.time()
        delivery = _delivery(counter, station, 120)
        arrivals = sorted(t for t, _ in counter.messages(station.topics.result))
    first, last = arrivals[0], arrivals[-1]
    out = {
        "queued": queued,
        "queue_s": round(add_s, 2),
        "reconnect_s": round(first - restart, 2),
        "drain_s": round(last - first, 2),
        "drain_per_s": round(len(arrivals) / max(last - first, 1e-6), 1),
        "restart_to_outbox_empty_s": round(emptied - restart, 2),
        "load_average": {"start": load_start, "end": _load()},
        **delivery,
    }
    log(
        f"outage: {queued} queued, first result {out['reconnect_s']} s after restart, drained at "
        f"{out['drain_per_s']:.0f}/s, lost {delivery['missing']}, duplicates {delivery['duplicates']}"
    )
    return out


def run(quick: bool, out_dir: Path, n: int = 0, outage_n: int = OUTAGE_RESULTS, alone_n: Optional[int] = None) -> Path:
    started = time.monotonic()
    n = n or (500 if quick else 2000)
    alone_n = alone_n or (5000 if quick else 20_000)
    paced_n = 300 if quick else 1200
    ctx = context(
        quick,
        results_alone=alone_n,
        results_per_mode=n,
        outage_results=outage_n,
        max_inflight=20,
        qos=1,
        group_commit_s=GROUP_COMMIT_S,
        paced_rate_per_s=PACED_RATE,
    )
    workdir = WORK / f"outbox-{uuid.uuid4().hex[:6]}"
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "alone": [alone(workdir, alone_n, mode) for mode in ("full", "normal")]
        + [alone(workdir, min(alone_n, 1000), "per_result_sync")]
    }
    broker = ProductionBroker(workdir / "broker")
    broker.start()
    try:
        results["throughput"] = [throughput(broker, workdir, n, mode) for mode in ("full", "normal")]
        results["paced"] = [paced(broker, workdir, paced_n, PACED_RATE, before) for before in (False, True)]
        results["outage"] = outage(broker, workdir, outage_n)
    finally:
        broker.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    return write_result(out_dir, NAME, ctx, results, started)
