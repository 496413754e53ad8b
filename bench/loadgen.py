"""Many stations against one broker, one line controller and one monitor: decision latency, loss, CPU.

The generator plays N stations and the PLC of one line, without TensorFlow, against a Mosquitto configured
like production (:class:`bench.broker.ProductionBroker`: the shipped ``deploy/mosquitto/mosquitto.conf``,
so ``max_queued_messages 1000000`` instead of the default 1000 that drops messages, and persistence saved
after every change). The real line controller (``inspector controller``) and the real monitor
(:class:`controller.monitor.LineMonitor` on its own MQTT subscription, repainting every second as the CLI
does) run as separate processes, so each one's CPU time is read from /proc on its own.

One part goes through the line as in production: the PLC announces it on the controller's
``trigger.input_topic``; the controller tracks it and sends a trigger command to every station; every
station answers with a :class:`~inspector.protocol.payloads.Result` for that part after ``inspect_ms``
(its simulated capture and inference); the controller decides (accept, or reject on the first failing
verdict) and publishes the decision, and rejects go to the PLC's reject topic. Every station inspects
every part, so ``rate`` parts/s are ``rate`` results/s per station and ``stations x rate`` results/s
into the controller. Verdicts are a fixed function of (seed, station, part), so the action expected for
every part is known and checked against the controller's.

Measured per step: announce-to-decision latency at the PLC (the whole round trip: announcement, N
trigger commands, N results, decision, through the broker each way) and the controller's own
``wait_ms``; parts announced vs decided (none may be missing or time out); results published vs received
by the controller and by the monitor (counted, none may be missing); the monitor's repaints and message
rate; CPU of broker, controller (and its busiest thread), monitor and generator, with the load average.

Examples (at the repository root)::

    python -m bench.loadgen                                   # 50 stations x 20 results/s for 20 s
    python -m bench.loadgen --stations 3 --rate 5 --seconds 2
    python -m bench.loadgen --ramp --out bench/results        # raise the load until p99 or loss breaks
    python -m bench loadgen --quick                           # the 50 x 20 step, 10 s, as part of `all`
    python -m bench.loadgen --probe-fanout 20                 # one client's burst of 200 QoS 1 messages
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bench.broker import ProductionBroker
from bench.common import REPO, WORK, child_env, context, cpu_percent, log, sample_process, summary, write_result
from inspector.localbroker import LocalBroker
from inspector.mqtt import MqttConfig, Will, make_client
from inspector.protocol.commands import CommandError, TriggerCommand, parse_command
from inspector.protocol.enums import Action, CameraState, DecisionReason, Presence, Verdict
from inspector.protocol.payloads import ControllerState, Decision, ModelRef, Result, Stats
from inspector.protocol.topics import ControllerTopics, StationTopics

NAME = "loadgen"
LINE = "load"
CONTROLLER_ID = "controller"
DEFAULT_STEPS = "50x20,50x40,50x60,100x40,100x60,100x80,200x60,200x80"
MODEL = ModelRef(name="loadgen", version="1", sha256="0" * 12)
CLASSES = ("good", "crack")


@dataclass(frozen=True)
class Load:
    """One load step. Every station inspects every part: ``rate_hz`` is parts/s and results/s per station."""

    stations: int = 50
    rate_hz: float = 20.0
    seconds: float = 20.0
    inspect_ms: float = 10.0  # trigger to result at a station (capture + inference)
    fail_rate: float = 0.001  # per result; a failing verdict rejects its part at once
    review_rate: float = 0.001
    seed: int = 0
    deadline_s: float = 2.0  # the controller's result_deadline_s (its shipped default)

    @property
    def results_per_s(self) -> float:
        return self.stations * self.rate_hz

    @property
    def parts(self) -> int:
        return max(1, int(round(self.seconds * self.rate_hz)))

    @property
    def names(self) -> List[str]:
        return [f"s{i:03d}" for i in range(1, self.stations + 1)]


def verdict_for(seed: int, station: str, part_id: str, fail_rate: float, review_rate: float) -> Verdict:
    """The verdict a station gives a part: a fixed function of its arguments, so a run can be checked."""
    draw = random.Random(f"{seed}/{station}/{part_id}").random()
    if draw < fail_rate:
        return Verdict.FAIL
    return Verdict.REVIEW if draw < fail_rate + review_rate else Verdict.PASS


def expected_action(verdicts: List[Verdict]) -> Action:
    """The controller's action for these verdicts with ``review_action: reject`` (the shipped default)."""
    return Action.REJECT if any(v != Verdict.PASS for v in verdicts) else Action.ACCEPT


def line_config(load: Load, broker: LocalBroker, controller_inflight: Optional[int] = None) -> Dict[str, Any]:
    """The line.yaml of the controller under test: every station triggered per part, PLC topics, mqtt gate;
    ``controller_inflight`` sets its ``mqtt.max_inflight`` (None: the default, 20 as shipped)."""
    mqtt: Dict[str, Any] = {"host": broker.host, "port": broker.port, "protocol": broker.protocol}
    if controller_inflight:
        mqtt["max_inflight"] = int(controller_inflight)
    return {
        "line": LINE,
        "controller_id": CONTROLLER_ID,
        "mqtt": mqtt,
        "stations": load.names,
        "result_deadline_s": load.deadline_s,
        "offline_policy": "reject",
        "review_action": "reject",
        "state_interval_s": 1.0,
        "actuator": {"type": "mqtt", "topic": f"plc/{LINE}/reject"},
        "trigger": {"input_topic": f"plc/{LINE}/part"},
    }


class _Station:
    """One simulated station: its own MQTT connection, last will, retained status, cmd subscription."""

    def __init__(self, gen: LoadGenerator, name: str, cfg: MqttConfig):
        self.gen = gen
        self.name = name
        self.topics = StationTopics(cfg.prefix, LINE, name)
        self.seq = 0
        self.verdicts: Dict[Verdict, int] = {v: 0 for v in Verdict}
        self.started = time.time()
        self.client = make_client(
            cfg,
            f"loadgen-{LINE}-{name}",
            will=Will(self.topics.status, Presence.OFFLINE.value.encode()),
            max_inflight=cfg.max_inflight,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: gen.subscribed.add(name)
        self.client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.gen.errors.append(f"{self.name}: connection refused ({reason_code})")
            return
        client.subscribe([(self.topics.cmd, 1), (self.topics.engineering, 1)])
        client.publish(self.topics.status, Presence.ONLINE.value, qos=1, retain=True)
        self.publish_stats()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            command = parse_command(msg.payload)
        except CommandError as exc:
            self.gen.errors.append(f"{self.name}: bad command {exc}")
            return
        if isinstance(command, TriggerCommand) and command.part_id is not None:
            self.gen.on_trigger(self, command.part_id)

    def answer(self, part_id: str) -> None:
        """Publish this station's result for ``part_id`` (QoS 1, as the station's publisher does)."""
        verdict = verdict_for(
            self.gen.load.seed, self.name, part_id, self.gen.load.fail_rate, self.gen.load.review_rate
        )
        score = {Verdict.PASS: 0.02, Verdict.REVIEW: 0.55, Verdict.FAIL: 0.97}[verdict]
        now = time.time()
        self.seq += 1
        self.verdicts[verdict] += 1
        result = Result(
            id=uuid.uuid4().hex,
            seq=self.seq,
            line=LINE,
            station=self.name,
            part_id=part_id,
            verdict=verdict,
            defect_score=score,
            threshold=0.5,
            top_class=CLASSES[verdict != Verdict.PASS],
            top_score=max(score, 1.0 - score),
            scores={CLASSES[0]: round(1.0 - score, 4), CLASSES[1]: score},
            model=MODEL,
            captured_at=datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds"),
            capture_ts=now,
            inference_ms=self.gen.load.inspect_ms,
            frame=f"{part_id}.jpg",
        )
        self.client.publish(self.topics.result, result.to_json(), qos=1)
        self.gen.published += 1

    def publish_stats(self) -> None:
        inspected = sum(self.verdicts.values())
        stats = Stats(
            ts=time.time(),
            uptime_s=round(time.time() - self.started, 1),
            fps=self.gen.load.rate_hz,
            frames_captured=inspected,
            frames_inspected=inspected,
            frames_dropped=0,
            inference_ms_p50=self.gen.load.inspect_ms,
            inference_ms_p95=self.gen.load.inspect_ms,
            passed=self.verdicts[Verdict.PASS],
            failed=self.verdicts[Verdict.FAIL],
            review=self.verdicts[Verdict.REVIEW],
            yield_pct=round(100.0 * self.verdicts[Verdict.PASS] / inspected, 2) if inspected else None,
            camera_state=CameraState.RUNNING,
            model_version=MODEL.version,
        )
        self.client.publish(self.topics.stats, stats.to_json(), qos=0, retain=True)


class LoadGenerator:
    """N stations and the PLC of one line, all driven by one thread (paho's external-loop API over select)."""

    def __init__(self, load: Load, cfg: MqttConfig):
        self.load = load
        self.cfg = cfg
        self.ctl = ControllerTopics(cfg.prefix, LINE, CONTROLLER_ID)
        self.part_topic = f"plc/{LINE}/part"
        self.reject_topic = f"plc/{LINE}/reject"
        self.errors: List[str] = []
        self.subscribed: set = set()
        self.published = 0
        self.triggers = 0
        self.rejects: Dict[str, int] = {}
        self.announced: Dict[str, float] = {}
        self.decided: Dict[str, Tuple[float, Decision]] = {}
        self.extra_decisions = 0
        self.controller_status: Optional[str] = None
        self.controller_state: Optional[ControllerState] = None
        self._due: List[Tuple[float, int, int, str]] = []  # (when, n, station index, part id)
        self._n = 0
        self._index = {name: i for i, name in enumerate(load.names)}
        self.stations = [_Station(self, name, cfg) for name in load.names]
        self.plc = make_client(cfg, f"loadgen-{LINE}-plc")
        self.plc.on_connect = lambda c, *a: c.subscribe(
            [(self.ctl.decision, 1), (self.ctl.status, 1), (self.ctl.state, 1), (self.reject_topic, 1)]
        )
        self.plc.on_subscribe = lambda *a: self.subscribed.add("plc")
        self.plc.on_message = self._on_plc_message
        self.plc.on_disconnect = self._on_disconnect
        for station in self.stations:
            station.client.on_disconnect = self._on_disconnect
        self._next_misc = 0.0
        self._closing = False

    # -- the event loop ------------------------------------------------------------------------------

    def _clients(self) -> list:
        return [self.plc] + [s.client for s in self.stations]

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self._closing:
            self.errors.append(f"a client lost its connection ({reason_code})")

    def pump(self, timeout: float) -> None:
        """One pass: due station answers, then every readable/writable socket, keepalives once a second."""
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            _, _, index, part_id = heapq.heappop(self._due)
            self.stations[index].answer(part_id)
        if self._due:
            timeout = max(0.0, min(timeout, self._due[0][0] - now))
        socks = {}
        for client in self._clients():
            sock = client.socket()
            if sock is not None:
                socks[sock] = client
        writable = [s for s, c in socks.items() if c.want_write()]
        readable, ready, _ = select.select(list(socks), writable, [], timeout)
        for sock in readable:
            socks[sock].loop_read(100)
        for sock in ready:
            socks[sock].loop_write()
        if now >= self._next_misc:
            self._next_misc = now + 1.0
            for client in self._clients():
                client.loop_misc()

    def pump_until(self, condition, timeout: float, what: str) -> bool:
        end = time.monotonic() + timeout
        while not condition():
            if self.errors:
                raise RuntimeError(f"load generator: {self.errors[:5]}")
            if time.monotonic() > end:
                log(f"timed out after {timeout:.0f} s waiting for {what}")
                return False
            self.pump(0.05)
        return True

    # -- callbacks ------------------------------------------------------------------------------------

    def on_trigger(self, station: _Station, part_id: str) -> None:
        self.triggers += 1
        self._n += 1
        when = time.monotonic() + self.load.inspect_ms / 1000.0
        heapq.heappush(self._due, (when, self._n, self._index[station.name], part_id))

    def _on_plc_message(self, client, userdata, msg) -> None:
        try:
            if msg.topic == self.ctl.decision:
                decision = Decision.model_validate_json(msg.payload)
                if decision.part_id in self.decided or decision.part_id not in self.announced:
                    self.extra_decisions += 1
                else:
                    self.decided[decision.part_id] = (time.monotonic(), decision)
            elif msg.topic == self.ctl.status:
                self.controller_status = msg.payload.decode()
            elif msg.topic == self.ctl.state:
                self.controller_state = ControllerState.model_validate_json(msg.payload)
            elif msg.topic == self.reject_topic:
                reason = json.loads(msg.payload)["reason"]
                self.rejects[reason] = self.rejects.get(reason, 0) + 1
        except Exception as exc:  # a paho callback never raises; the run reports it instead
            self.errors.append(f"plc: cannot handle {msg.topic}: {exc}")

    # -- phases ---------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect the PLC, wait for the controller, then the stations, until the controller sees all online."""
        kwargs = {"clean_start": True} if self.cfg.protocol == "5" else {}
        self.plc.connect(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, **kwargs)
        self.pump_until(lambda: "plc" in self.subscribed, 20, "the PLC's subscription")
        if not self.pump_until(lambda: self.controller_status == Presence.ONLINE.value, 60, "the controller"):
            raise RuntimeError("the controller did not come online")
        for station in self.stations:
            station.client.connect(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, **kwargs)
        names = set(self.load.names)

        def all_online() -> bool:
            state = self.controller_state
            return state is not None and all(state.stations.get(n) == Presence.ONLINE.value for n in names)

        if not self.pump_until(lambda: names <= self.subscribed and all_online(), 60, "stations online"):
            raise RuntimeError("the controller did not see every station online")

    def run(self, drain_s: float) -> Tuple[float, float]:
        """Announce ``load.parts`` parts at ``load.rate_hz``, then wait for their decisions (at most ``drain_s``).

        Returns (monotonic start, monotonic end of announcing)."""
        start = time.monotonic()
        next_stats = start + self.cfg.stats_interval_s
        for k in range(self.load.parts):
            due = start + k / self.load.rate_hz
            while True:
                now = time.monotonic()
                if now >= due:
                    break
                self.pump(due - now)
                if now >= next_stats:
                    next_stats = now + self.cfg.stats_interval_s
                    for station in self.stations:
                        station.publish_stats()
            part_id = f"P{k + 1:07d}"
            self.announced[part_id] = time.monotonic()
            self.plc.publish(self.part_topic, json.dumps({"part_id": part_id}), qos=1)
        announced_until = time.monotonic()
        self.pump_until(lambda: len(self.decided) >= len(self.announced), drain_s, "every decision")
        return start, announced_until

    def wait_controller_results(self, timeout: float) -> bool:
        """Until the controller's retained state counts every published result (it publishes it every second)."""

        def counted() -> bool:
            state = self.controller_state
            return state is not None and state.results + state.duplicates >= self.published and state.pending == 0

        return self.pump_until(counted, timeout, "the controller's count of results")

    def close(self) -> None:
        self._closing = True
        for station in self.stations:
            station.publish_stats()
        self.pump_until(lambda: not any(c.want_write() for c in self._clients()), 5, "last writes")
        for client in self._clients():
            client.disconnect()


# -- per-process CPU -----------------------------------------------------------------------------------


def thread_cpu(pid: int) -> Dict[int, float]:
    """CPU seconds (user + system) per thread of ``pid``, from /proc/<pid>/task/*/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: Dict[int, float] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return out


class CpuWatch:
    """CPU use of named processes (and the busiest thread of each) between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: Dict[str, int]):
        self.pids = pids

    def start(self) -> None:
        self.first = {name: sample_process(pid) for name, pid in self.pids.items()}
        self.first_threads = {name: thread_cpu(pid) for name, pid in self.pids.items()}
        self.t0 = time.monotonic()

    def stop(self) -> Dict[str, Dict[str, float]]:
        wall = max(time.monotonic() - self.t0, 1e-9)
        out = {}
        for name, pid in self.pids.items():
            first, last = self.first[name], sample_process(pid)
            threads = thread_cpu(pid)
            busiest = max((cpu - self.first_threads[name].get(tid, 0.0) for tid, cpu in threads.items()), default=0.0)
            if first is None or last is None:
                continue
            out[name] = {
                "cpu_pct": cpu_percent(first, last),
                "busiest_thread_pct": round(100.0 * busiest / wall, 1),
                "threads": len(threads),
                "rss_mb": last.rss_mb,
            }
        return out


# -- one step ------------------------------------------------------------------------------------------


def _inspector(*args: str) -> List[str]:
    """The command line of ``inspector <args>`` in a fresh interpreter."""
    return [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())", *args]


def run_step(
    load: Load,
    broker: LocalBroker,
    workdir: Path,
    p99_limit_ms: float = 500.0,
    controller_inflight: Optional[int] = None,
) -> Dict[str, Any]:
    """One load step against ``broker`` with a fresh controller and monitor process; returns its record."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "line.yaml"
    config.write_text(json.dumps(line_config(load, broker, controller_inflight), indent=1))  # JSON is YAML
    cfg = MqttConfig(host=broker.host, port=broker.port, protocol=broker.protocol)  # type: ignore[arg-type]
    env = child_env()
    with open(workdir / "controller.log", "wb") as ctl_log, open(workdir / "monitor.log", "wb") as mon_log:
        controller = subprocess.Popen(
            _inspector("controller", "--config", str(config)),
            stdout=subprocess.PIPE,
            stderr=ctl_log,
            env=env,
            cwd=REPO,
        )
        monitor = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", "--monitor-worker", "--broker", f"{broker.host}:{broker.port}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=mon_log,
            env=env,
            cwd=REPO,
        )
        gen = LoadGenerator(load, cfg)
        try:
            ready = monitor.stdout.readline() if monitor.stdout else b""
            if ready.strip() != b"ready":
                raise RuntimeError(f"the monitor did not start: {ready!r}, see {workdir / 'monitor.log'}")
            gen.connect()
            pids = {"broker": broker.proc.pid if broker.proc else 0, "controller": controller.pid}
            watch = CpuWatch({**pids, "monitor": monitor.pid, "generator": os.getpid()})
            load_start = [round(v, 2) for v in os.getloadavg()]
            watch.start()
            start, announced_until = gen.run(drain_s=load.deadline_s + max(10.0, load.seconds))
            decided_at = time.monotonic()
            cpu = watch.stop()
            load_end = [round(v, 2) for v in os.getloadavg()]
            controller_counted = gen.wait_controller_results(30.0)
            assert monitor.stdin is not None and monitor.stdout is not None
            monitor.stdin.write(f"{gen.published}\n".encode())
            monitor.stdin.flush()
            mon = json.loads(monitor.stdout.readline() or b"{}")
            gen.close()
        finally:
            for proc in (controller, monitor):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            ctl_out, _ = controller.communicate(timeout=30)
            monitor.communicate(timeout=30)
    snapshot = ControllerState.model_validate_json(ctl_out) if ctl_out.strip() else None
    return _record(
        load,
        gen,
        start,
        announced_until,
        decided_at,
        cpu,
        load_start,
        load_end,
        mon,
        snapshot,
        controller_counted,
        p99_limit_ms,
    )


def _record(
    load: Load,
    gen: LoadGenerator,
    start: float,
    announced_until: float,
    decided_at: float,
    cpu: Dict[str, Any],
    load_start: List[float],
    load_end: List[float],
    mon: Dict[str, Any],
    snapshot: Optional[ControllerState],
    controller_counted: bool,
    p99_limit_ms: float,
) -> Dict[str, Any]:
    latencies = [(gen.announced[p], at - gen.announced[p]) for p, (at, _) in gen.decided.items()]
    tail_from = start + 0.75 * (announced_until - start)
    reasons: Dict[str, int] = {}
    wrong = 0
    for part_id, (_, decision) in gen.decided.items():
        reasons[decision.reason] = reasons.get(decision.reason, 0) + 1
        verdicts = [verdict_for(load.seed, s, part_id, load.fail_rate, load.review_rate) for s in load.names]
        wrong += decision.action != expected_action(verdicts)
    missing = len(gen.announced) - len(gen.decided)
    timeouts = reasons.get(DecisionReason.TIMEOUT.value, 0)
    ctl_results = None if snapshot is None else snapshot.results + snapshot.duplicates
    decision_ms = summary(d for _, d in latencies)
    broke = []
    if missing or timeouts or wrong:
        broke.append(f"{missing} part(s) without a decision, {timeouts} timeout(s), {wrong} wrong action(s)")
    if ctl_results != gen.published or not controller_counted:
        broke.append(f"controller received {ctl_results} of {gen.published} results")
    if mon.get("results") != gen.published:
        broke.append(f"monitor received {mon.get('results')} of {gen.published} results")
    if gen.triggers != load.stations * len(gen.announced):
        broke.append(f"stations received {gen.triggers} of {load.stations * len(gen.announced)} triggers")
    if decision_ms.get("p99", 0.0) > p99_limit_ms:
        broke.append(f"decision p99 {decision_ms['p99']} ms > {p99_limit_ms} ms")
    return {
        "load": asdict(load),
        "results_per_s_offered": load.results_per_s,
        "parts_announced": len(gen.announced),
        "announce_rate_achieved": round(len(gen.announced) / max(announced_until - start, 1e-9), 1),
        "parts_decided": len(gen.decided),
        "decisions_by_reason": reasons,
        "wrong_actions": wrong,
        "extra_decisions": gen.extra_decisions,
        "triggers_received_by_stations": gen.triggers,
        "results_published": gen.published,
        "results_received_by_controller": ctl_results,
        "late_results": None if snapshot is None else snapshot.late,
        "duplicates": None if snapshot is None else snapshot.duplicates,
        "results_received_by_monitor": mon.get("results"),
        "reject_commands_to_plc": gen.rejects,
        "decision_ms": decision_ms,
        "decision_ms_last_quarter": summary(d for t, d in latencies if t >= tail_from),
        "controller_wait_ms": summary(d.wait_ms / 1000.0 for _, d in gen.decided.values() if d.wait_ms is not None),
        "drain_s": round(decided_at - announced_until, 2),
        "monitor": mon,
        "cpu": cpu,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "p99_limit_ms": p99_limit_ms,
        "broke": broke,
        "ok": not broke,
    }


# -- the monitor process -------------------------------------------------------------------------------


def monitor_worker(broker: str, interval: float = 1.0, wait_s: float = 60.0) -> int:
    """A LineMonitor on a real subscription, repainting every ``interval`` s; prints ``ready``, then, once the
    expected result count arrives on stdin and the monitor has counted that many (or ``wait_s`` passes),
    one JSON line with its counts."""
    from controller.monitor import LineMonitor, render
    from inspector.mqtt import BrokerClient, parse_broker

    host, port = parse_broker(broker)
    cfg = MqttConfig.model_validate({"host": host, "port": port})
    monitor = LineMonitor(started=time.monotonic())
    subscribed = threading.Event()
    expected: List[int] = []
    arrivals: List[float] = []
    lag_samples: List[Tuple[float, bytes]] = []
    errors = [0]

    def on_message(client, userdata, msg) -> None:
        try:
            monitor.handle(msg.topic, msg.payload)
            if msg.topic.endswith("/result"):
                arrivals.append(time.time())
                if len(arrivals) % 10 == 1:
                    lag_samples.append((arrivals[-1], msg.payload))
        except Exception:  # a paho callback never raises
            errors[0] += 1

    client = BrokerClient(cfg, f"loadgen-monitor-{os.getpid()}")
    client.on_connect(lambda _: client.client.subscribe(monitor.subscriptions(cfg.prefix, LINE)))
    client.client.on_subscribe = lambda *a: subscribed.set()
    client.client.on_message = on_message
    if not client.start(10.0) or not subscribed.wait(10.0):
        return 1
    print("ready", flush=True)
    threading.Thread(target=lambda: expected.append(int(sys.stdin.readline() or 0)), daemon=True).start()

    def counted() -> int:
        for _ in range(5):
            try:
                return sum(sum(n.verdicts.values()) for n in list(monitor.nodes.values()) if not n.is_controller)
            except RuntimeError:  # the MQTT thread changed a Counter while we summed
                continue
        return -1

    render_s: List[float] = []
    started = time.monotonic()
    deadline: Optional[float] = None
    next_paint = started
    while True:
        now = time.monotonic()
        if now >= next_paint:
            t0 = time.perf_counter()
            render(monitor, color=False)
            render_s.append(time.perf_counter() - t0)
            next_paint += interval
        if expected and deadline is None:
            deadline = now + wait_s
        if expected and (counted() >= expected[0] or (deadline is not None and now > deadline)):
            break
        time.sleep(min(0.05, max(0.0, next_paint - time.monotonic())))
    painted_for = time.monotonic() - started
    client.stop()
    lags = [at - json.loads(payload)["capture_ts"] for at, payload in lag_samples]
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    print(
        json.dumps(
            {
                "results": counted(),
                "stations_seen": sum(1 for n in monitor.nodes.values() if not n.is_controller),
                "bad_messages": monitor.bad_messages + errors[0],
                "results_per_s": round((len(arrivals) - 1) / span, 1) if span > 0 else None,
                "repaints": len(render_s),
                "repaints_per_s": round(len(render_s) / max(painted_for, 1e-9), 2),
                "repaint_ms": summary(render_s),
                "result_lag_ms": summary(lags),
            }
        ),
        flush=True,
    )
    return 0


class VariantBroker(ProductionBroker):
    """The production broker with the lines of some keys replaced (``lines``: full config lines)."""

    def __init__(self, workdir: Path, lines: Sequence[str] = ()):
        self.lines = list(lines)
        super().__init__(workdir)

    def _write_config(self, extra: List[str]) -> None:
        super()._write_config(extra)
        keys = {line.split()[0] for line in self.lines}
        kept = [line for line in self.config.read_text().splitlines() if line.split()[0] not in keys]
        self.config.write_text("\n".join(kept + self.lines) + "\n")


def fanout_probe(messages: int = 200, inflight: int = 20, broker_lines: Sequence[str] = ()) -> Dict[str, Any]:
    """What the controller's fan-out meets, on one connection: a paho client that, like the controller in its
    message callback, publishes ``messages`` QoS 1 messages at once with ``inflight`` unacknowledged at most;
    seconds until a subscriber has all of them."""
    from inspector.mqtt import BrokerClient

    workdir = WORK / NAME / f"probe-{uuid.uuid4().hex[:6]}"
    with VariantBroker(workdir, broker_lines) as broker:
        cfg = MqttConfig(host=broker.host, port=broker.port)
        arrived: List[float] = []
        done = threading.Event()
        subscribed = threading.Event()

        def on_arrival(client, userdata, msg) -> None:
            arrived.append(time.monotonic())
            if len(arrived) >= messages:
                done.set()

        def fan_out(client, userdata, msg) -> None:
            for i in range(messages):
                client.publish(f"probe/out/{i}", "x" * 60, qos=1)

        rx = BrokerClient(cfg, "probe-rx")
        rx.on_connect(lambda _: rx.client.subscribe("probe/out/#", 1))
        rx.client.on_subscribe = lambda *a: subscribed.set()
        rx.client.on_message = on_arrival
        fan = BrokerClient(cfg, "probe-fan")
        fan.client.max_inflight_messages_set(inflight)
        fan.on_connect(lambda _: fan.client.subscribe("probe/in", 1))
        fan.client.on_message = fan_out
        try:
            if not (rx.start(10.0) and fan.start(10.0) and subscribed.wait(10.0)):
                raise RuntimeError("probe clients could not connect")
            time.sleep(0.5)  # the fan's SUBACK
            started = time.monotonic()
            rx.publish("probe/in", "go", qos=1)
            done.wait(120.0)
        finally:
            rx.stop()
            fan.stop()
    return {
        "messages": messages,
        "inflight": inflight,
        "broker_lines_replaced": list(broker_lines),
        "received": len(arrived),
        "seconds": round(arrived[-1] - started, 3) if arrived else None,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


# -- steps and the ramp --------------------------------------------------------------------------------


def parse_steps(text: str) -> List[Tuple[int, float]]:
    """``50x20,100x40`` -> [(50, 20.0), (100, 40.0)] (stations x results/s per station)."""
    steps = []
    for item in text.split(","):
        stations, _, rate = item.strip().partition("x")
        steps.append((int(stations), float(rate)))
    return steps


@dataclass(frozen=True)
class Variant:
    """What a step runs against: production broker lines replaced, and the controller's in-flight window."""

    label: str = "as shipped"
    broker_lines: Tuple[str, ...] = ()
    controller_inflight: Optional[int] = None


# --compare: the shipped setup, then without the broker's per-change save, then also with a wider window
COMPARE = (
    Variant(),
    Variant("autosave_30s", ("autosave_on_changes false", "autosave_interval 30")),
    Variant("autosave_30s_inflight_1000", ("autosave_on_changes false", "autosave_interval 30"), 1000),
)


def ramp(
    steps: List[Tuple[int, float]],
    seconds: float,
    out_dir: Path,
    quick: bool,
    stop_on_break: bool = True,
    p99_limit_ms: float = 500.0,
    variants: Sequence[Variant] = (Variant(),),
    name: str = NAME,
) -> Dict[str, Any]:
    """Each step on a fresh production-configured broker, once per variant (interleaved, so that the machine's
    load hits them alike); stop after the first step that breaks for every variant."""
    ctx = context(quick, steps=[f"{s}x{r:g}" for s, r in steps], seconds_per_step=seconds, p99_limit_ms=p99_limit_ms)
    ctx["broker_config"] = "deploy/mosquitto/mosquitto.conf (bench/broker.py ProductionBroker)"
    ctx["variants"] = [asdict(v) for v in variants]
    started = time.monotonic()
    records: List[Dict[str, Any]] = []
    for stations, rate in steps:
        load = Load(stations=stations, rate_hz=rate, seconds=seconds)
        broke = []
        for variant in variants:
            workdir = WORK / NAME / f"{stations}x{rate:g}-{uuid.uuid4().hex[:6]}"
            log(f"{stations} stations x {rate:g}/s = {load.results_per_s:.0f} results/s, {variant.label}")
            with VariantBroker(workdir / "broker", variant.broker_lines) as broker:
                record = run_step(load, broker, workdir, p99_limit_ms, variant.controller_inflight)
            record["variant"] = asdict(variant)
            records.append(record)
            broke.append(bool(record["broke"]))
            log(
                f"  decision p50/p99 {record['decision_ms'].get('p50')}/{record['decision_ms'].get('p99')} ms, "
                f"decided {record['parts_decided']}/{record['parts_announced']}, results "
                f"{record['results_received_by_controller']}/{record['results_published']} (controller) "
                f"{record['results_received_by_monitor']} (monitor), cpu {json.dumps(record['cpu'])}, "
                f"load {record['load_average_start']}" + (f"; BROKE: {record['broke']}" if record["broke"] else "")
            )
            write_result(out_dir, name, ctx, records, started)
        if all(broke) and stop_on_break:
            break
    return {"context": ctx, "results": records}


def run(quick: bool, out_dir: Path) -> None:
    """``python -m bench loadgen``: the 50 x 20 step (10 s with --quick), or the whole ramp (full)."""
    if quick:
        ramp([(50, 20.0)], 10.0, out_dir, quick)
    else:
        ramp(parse_steps(DEFAULT_STEPS), 20.0, out_dir, quick)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadgen", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stations", type=int, default=50, help="stations on the line (default 50)")
    parser.add_argument("--rate", type=float, default=20.0, help="results/s per station = parts/s (default 20)")
    parser.add_argument("--seconds", type=float, default=20.0, help="announcing time per step (default 20)")
    parser.add_argument("--ramp", action="store_true", help=f"run the steps {DEFAULT_STEPS} until one breaks")
    parser.add_argument("--steps", help="comma-separated STATIONSxRATE steps (implies --ramp)")
    parser.add_argument(
        "--p99-limit-ms",
        type=float,
        default=500.0,
        help="a step breaks above this decision p99 (default 500 ms: a quarter of the 2 s deadline)",
    )
    parser.add_argument("--keep-going", action="store_true", help="run every step even after one breaks")
    parser.add_argument(
        "--broker-line",
        action="append",
        default=[],
        metavar="'KEY VALUE'",
        help="replace the production Mosquitto line(s) of KEY, e.g. 'autosave_on_changes false' (repeatable)",
    )
    parser.add_argument(
        "--controller-inflight",
        type=int,
        metavar="N",
        help="the controller's mqtt.max_inflight (messages in flight) set to N instead of the default 20",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="run every step as shipped, without the per-change save, and also with 1000 in flight (interleaved)",
    )
    parser.add_argument("--name", default=NAME, help="result file name without .json (default loadgen)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results"), help="folder of loadgen.json")
    parser.add_argument(
        "--probe-fanout",
        type=int,
        metavar="INFLIGHT",
        help="instead: one client publishing 200 QoS 1 messages at once with INFLIGHT unacknowledged (prints JSON)",
    )
    parser.add_argument("--monitor-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--broker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.monitor_worker:
        return monitor_worker(args.broker)
    if args.probe_fanout:
        print(json.dumps(fanout_probe(inflight=args.probe_fanout, broker_lines=args.broker_line)))
        return 0
    if args.steps or args.ramp:
        steps = parse_steps(args.steps or DEFAULT_STEPS)
    else:
        steps = [(args.stations, args.rate)]
    variant = Variant(
        "as given" if args.broker_line or args.controller_inflight else "as shipped",
        tuple(args.broker_line),
        args.controller_inflight,
    )
    out = ramp(
        steps,
        args.seconds,
        Path(args.out),
        quick=False,
        stop_on_break=not args.keep_going,
        p99_limit_ms=args.p99_limit_ms,
        variants=COMPARE if args.compare else (variant,),
        name=args.name,
    )
    return 0 if len(steps) > 1 or out["results"][0]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
