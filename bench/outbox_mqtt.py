"""Benchmark 4: results through the durable outbox to Mosquitto at QoS 1, and the drain after an outage.

Uses the station's own :class:`edge.outbox.Outbox` and :class:`edge.publisher.Publisher` (default MQTT
settings: MQTT 5, 20 results in flight) against the production-configured Mosquitto on loopback, with
realistic result payloads (:class:`inspector.protocol.payloads.Result` JSON, six class scores, about 600 bytes).
A persistent-session subscriber counts results by id, so "nothing lost" is checked, not assumed.

* **throughput** - one thread adds N results as fast as it can while the publisher drains; reported:
  the add rate, and results/s from the first add to the last PUBACK (outbox empty). Measured with the
  shipped ``synchronous=full`` (an fsync per commit, survives power loss) and with ``normal``.
* **outage drain** - the broker is stopped, 10,000 results are queued, the broker is started again;
  reported: time to reconnect, and the drain rate from the first to the last result arriving.

Full: N = 10,000 per durability mode. Quick: N = 2,000; the outage always queues 10,000.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from bench.broker import Counter, ProductionBroker
from bench.common import WORK, context, log, write_result

NAME = "outbox"
OUTAGE_RESULTS = 10_000
LINE = "line"


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


class Station:
    """An outbox and a publisher as the station wires them, without camera or model."""

    def __init__(self, broker, workdir: Path, synchronous: str):
        from edge.outbox import Outbox
        from edge.publisher import Publisher
        from inspector.mqtt import MqttConfig
        from inspector.protocol.topics import StationTopics

        self.name = f"ob-{uuid.uuid4().hex[:6]}"
        self.topics = StationTopics("bench", LINE, self.name)
        self.outbox = Outbox(workdir / f"{self.name}.sqlite", synchronous=synchronous)
        cfg = MqttConfig(
            host=broker.host, port=broker.port, protocol="5", prefix="bench", reconnect_min_s=0.2, reconnect_max_s=1.0
        )
        self.publisher = Publisher(cfg, self.topics, f"bench-{self.name}", self.outbox, on_command=lambda *a: None)
        self.ids = []

    def start(self, timeout: float = 10.0) -> None:
        self.publisher.start()
        deadline = time.monotonic() + timeout
        while not self.publisher.connected:
            if time.monotonic() > deadline:
                raise RuntimeError("publisher did not connect")
            time.sleep(0.01)

    def add(self, n: int) -> float:
        """Queue ``n`` results as fast as possible; returns the seconds it took."""
        start = time.perf_counter()
        for _ in range(n):
            rid = uuid.uuid4().hex
            seq = self.outbox.last_seq + 1
            self.outbox.add(rid, seq, self.topics.result, _payload(self.name, seq, rid))
            self.publisher.notify()
            self.ids.append(rid)
        return time.perf_counter() - start

    def wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.outbox.depth() > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def stop(self) -> None:
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


def throughput(broker, workdir: Path, n: int, synchronous: str) -> dict:
    station = Station(broker, workdir, synchronous)
    counter = Counter(broker, [station.topics.result], persistent=True).start()
    station.start()
    try:
        start = time.perf_counter()
        add_s = station.add(n)
        if not station.wait_empty(600):
            raise RuntimeError(f"outbox still holds {station.outbox.depth()} results after 600 s")
        total_s = time.perf_counter() - start
        delivery = _delivery(counter, station, 60)
    finally:
        station.stop()
        counter.stop()
    out = {
        "synchronous": synchronous,
        "results": n,
        "add_per_s": round(n / add_s, 1),
        "add_ms": round(1000 * add_s / n, 3),
        "acked_per_s": round(n / total_s, 1),
        "seconds": round(total_s, 2),
        **delivery,
    }
    log(
        f"outbox {synchronous}: add {out['add_per_s']:.0f}/s, through to PUBACK {out['acked_per_s']:.0f}/s, "
        f"lost {delivery['missing']}"
    )
    return out


def outage(broker, workdir: Path, n: int) -> dict:
    station = Station(broker, workdir, "full")
    counter = Counter(broker, [station.topics.result], persistent=True).start()
    station.start()
    try:
        broker.stop()
        add_s = station.add(n)
        queued = station.outbox.depth()
        restart = time.time()
        broker.start()
        if not station.wait_empty(600):
            raise RuntimeError(f"outbox still holds {station.outbox.depth()} results 600 s after the restart")
        emptied = time.time()
        delivery = _delivery(counter, station, 120)
        arrivals = sorted(t for t, _ in counter.messages(station.topics.result))
    finally:
        station.stop()
        counter.stop()
    first, last = arrivals[0], arrivals[-1]
    out = {
        "queued": queued,
        "queue_s": round(add_s, 2),
        "reconnect_s": round(first - restart, 2),
        "drain_s": round(last - first, 2),
        "drain_per_s": round(len(arrivals) / max(last - first, 1e-6), 1),
        "restart_to_outbox_empty_s": round(emptied - restart, 2),
        **delivery,
    }
    log(
        f"outage: {queued} queued, first result {out['reconnect_s']} s after restart, drained at "
        f"{out['drain_per_s']:.0f}/s, lost {delivery['missing']}, duplicates {delivery['duplicates']}"
    )
    return out


def run(quick: bool, out_dir: Path, n: int = 0, outage_n: int = OUTAGE_RESULTS) -> Path:
    started = time.monotonic()
    n = n or (2000 if quick else 10_000)
    ctx = context(quick, results_per_mode=n, outage_results=outage_n, max_inflight=20, qos=1)
    workdir = WORK / f"outbox-{uuid.uuid4().hex[:6]}"
    broker = ProductionBroker(workdir / "broker")
    broker.start()
    try:
        results = {
            "throughput": [throughput(broker, workdir, n, mode) for mode in ("full", "normal")],
            "outage": outage(broker, workdir, outage_n),
        }
    finally:
        broker.stop()
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
    return write_result(out_dir, NAME, ctx, results, started)
