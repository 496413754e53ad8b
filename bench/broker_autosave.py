"""What saving Mosquitto's queues after every change costs, and what it buys against ``kill -9``.

``deploy/mosquitto/mosquitto.conf`` sets ``autosave_on_changes true`` with ``autosave_interval 1``: the
broker rewrites its persistence file after every loop iteration that queued a result, so results queued for
the away line controller survive a crash of the broker, not only a SIGTERM. This compares it with the
setting it replaced (``autosave_interval 30``: a save every 30 s) on the production-configured broker of
:mod:`bench.broker`, with about 600-byte QoS 1 messages from one paho client (20 in flight):

* **online**: results/s to PUBACK while a persistent subscriber is connected (normal operation);
* **away**: results/s to PUBACK while a persistent subscriber is away and its queue grows step by step
  (every save rewrites the whole queue, so the cost grows with it);
* **kill -9**: a publisher streams while the broker is killed at a random moment; reported per kill: how
  many PUBACKed messages the subscriber never got after the restart.

Run it on its own (it is not part of ``all``)::

    python -m bench.broker_autosave --quick        # away up to 5,000 queued, 5 kills per setting
    python -m bench.broker_autosave                # away up to 20,000 queued, 10 kills per setting
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, List

from bench.broker import ProductionBroker
from bench.common import WORK, context, log, results_dir, write_result

NAME = "broker_autosave"
TOPIC = "bench/line/cam1/result"
SETTINGS: Dict[str, List[str]] = {
    "interval_30s": ["autosave_interval 30"],
    "on_changes_1": ["autosave_on_changes true", "autosave_interval 1"],  # as shipped
}


class Broker(ProductionBroker):
    """The production broker with its autosave lines replaced by one of SETTINGS."""

    def __init__(self, workdir: Path, autosave: List[str]):
        self.autosave = autosave
        super().__init__(workdir)

    def _write_config(self, extra: List[str]) -> None:
        super()._write_config(extra)
        lines = [line for line in self.config.read_text().splitlines() if not line.startswith("autosave")]
        self.config.write_text("\n".join(lines + self.autosave) + "\n")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(15)
        self.proc = None


def _client(broker: Broker, client_id: str, persistent: bool = False, received=None):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(20)
    kwargs: dict = {}
    if persistent:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        kwargs = {"clean_start": False, "properties": props}
        subscribed = threading.Event()
        client.on_connect = lambda c, *a: c.subscribe(TOPIC, 1)
        client.on_subscribe = lambda *a: subscribed.set()
        if received is not None:
            client.on_message = lambda c, u, msg: received.add(json.loads(msg.payload)["id"])
    client.connect(broker.host, broker.port, keepalive=30, **kwargs)
    client.loop_start()
    if persistent and not subscribed.wait(10):
        raise RuntimeError("subscriber could not subscribe")
    return client


def _close(client) -> None:
    client.disconnect()
    client.loop_stop()


def _payload(rid: str) -> str:
    return json.dumps({"id": rid, "station": "cam1", "scores": {"free": 0.91}, "pad": "x" * 540})


def _publish_rate(broker: Broker, n: int) -> float:
    """Results/s from the first publish to the last PUBACK."""
    client = _client(broker, f"bench-pub-{uuid.uuid4().hex[:6]}")
    try:
        start = time.perf_counter()
        infos = [client.publish(TOPIC, _payload(uuid.uuid4().hex), qos=1) for _ in range(n)]
        for info in infos:
            info.wait_for_publish(600)
        return n / (time.perf_counter() - start)
    finally:
        _close(client)


def online(workdir: Path, autosave: List[str], n: int) -> dict:
    broker = Broker(workdir, autosave).start()
    try:
        subscriber = _client(broker, f"bench-sub-{uuid.uuid4().hex[:6]}", persistent=True, received=set())
        rate = _publish_rate(broker, n)
        _close(subscriber)
    finally:
        broker.stop()
    return {"results": n, "acked_per_s": round(rate, 1)}


def away(workdir: Path, autosave: List[str], steps: List[int]) -> List[dict]:
    broker = Broker(workdir, autosave).start()
    out, queued = [], 0
    try:
        _close(_client(broker, f"bench-away-{uuid.uuid4().hex[:6]}", persistent=True))
        for n in steps:
            rate = _publish_rate(broker, n)
            out.append({"queued_before": queued, "queued_after": queued + n, "acked_per_s": round(rate, 1)})
            log(f"  {autosave}: queue {queued} -> {queued + n}: {rate:.0f} results/s to PUBACK")
            queued += n
    finally:
        broker.stop()
    return out


def _kill_once(workdir: Path, autosave: List[str], after_s: float) -> dict:
    """Stream for ``after_s`` seconds, kill -9 the broker, restart it: acknowledged vs delivered."""
    broker = Broker(workdir, autosave).start()
    sub_id = f"bench-away-{uuid.uuid4().hex[:6]}"
    _close(_client(broker, sub_id, persistent=True))
    publisher = _client(broker, f"bench-pub-{uuid.uuid4().hex[:6]}")
    sent = []
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            rid = uuid.uuid4().hex
            sent.append((rid, publisher.publish(TOPIC, _payload(rid), qos=1)))
            time.sleep(0.002)

    feeder = threading.Thread(target=feed)
    feeder.start()
    time.sleep(after_s)
    broker.kill()
    stop.set()
    feeder.join()
    publisher.loop_stop()
    acked = {rid for rid, info in sent if info.rc == 0 and info.is_published()}
    broker.start()
    received: set = set()
    subscriber = _client(broker, sub_id, persistent=True, received=received)
    deadline = time.monotonic() + 15
    while not acked <= received and time.monotonic() < deadline:
        time.sleep(0.05)
    _close(subscriber)
    broker.stop()
    return {"acked": len(acked), "lost": len(acked - received)}


def kill_rounds(workdir: Path, autosave: List[str], rounds: int, seed: int = 7) -> List[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(rounds):
        out.append(_kill_once(workdir / f"kill{i}", autosave, rng.uniform(1.0, 3.0)))
        log(f"  {autosave}: kill -9 #{i + 1}: {out[-1]['acked']} acknowledged, {out[-1]['lost']} lost")
    return out


def run(quick: bool, out_dir: Path) -> Path:
    started = time.monotonic()
    online_n = 1000 if quick else 3000
    steps = [1000, 1000, 3000] if quick else [1000, 1000, 3000, 5000, 10_000]
    rounds = 5 if quick else 10
    ctx = context(quick, online_results=online_n, away_steps=steps, kill_rounds=rounds, max_inflight=20, qos=1)
    results = {}
    for name, autosave in SETTINGS.items():
        work = WORK / f"autosave-{name}-{uuid.uuid4().hex[:6]}"
        log(f"=== {name}: {autosave} ===")
        results[name] = {
            "config": autosave,
            "online": online(work / "online", autosave, online_n),
            "away": away(work / "away", autosave, steps),
            "kill_9": kill_rounds(work / "kill", autosave, rounds),
        }
        log(f"  online: {results[name]['online']['acked_per_s']:.0f} results/s to PUBACK")
    return write_result(out_dir, NAME, ctx, results, started)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.broker_autosave",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smaller queues and fewer kills")
    parser.add_argument("--out", metavar="DIR", help="results folder (default bench/results/quick or .../full)")
    args = parser.parse_args()
    run(args.quick, results_dir(args.quick, args.out))


if __name__ == "__main__":
    main()
