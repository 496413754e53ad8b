"""Benchmarks 2 and 3: the whole station against the interpreter limit and against the naive loop.

In each round, for each bundle, three measurements run one after the other on the same machine:

* **interpreter only** - :mod:`bench.probe` invokes the bundle's model back to back on a preprocessed
  frame (the limit the station could reach);
* **station** - ``inspector run`` in its own process: a VGA MJPG video file read at full speed (replay
  source, every frame inspected), preprocessing, interpreter, decision, the durable outbox (SQLite,
  ``synchronous=full`` as shipped) and MQTT QoS 1 to the production-configured Mosquitto on loopback, with
  a subscriber counting results by arrival;
* **naive loop** - :mod:`bench.naive`: read, preprocess, invoke, publish and wait for the PUBACK.

**Triggered** (once per bundle, at the first thread count, after the rounds): the station in triggered
mode on the same video paced like a camera (``source.fps``), and triggers published as commands at
random moments (gaps uniform in 2-4 frame intervals, so they land at every phase of the frame clock); for
each trigger the time from its publish to the result's receipt (the decision point of a line controller:
two broker hops, as in the demo line), split into the wait for the frame (``capture_ts`` minus the
trigger) and frame to receipt. The goal is p99 <= one frame interval + the inference time + 10 ms.

After a warm-up, each is measured over the same window: results arriving per second at the subscriber,
capture-to-arrival latency (``capture_ts`` in the payload to the subscriber's receipt, the same machine
clock; the broker acknowledges the publisher while it forwards, so this is capture-to-broker-ack plus one
loopback hop), the process's CPU use and peak resident memory, and the frames the station dropped
(``frames_dropped`` of its final /stats). Rounds interleave the three, so a burst of load from other work
hits all of them; the reported ratio is the median over rounds of station fps / interpreter fps. The
cost of each stage alone (video decode, preprocessing, model, result JSON; :mod:`bench.probe` ``stages``)
is measured once per bundle and thread count, to show where a frame's time goes.

``compare_with`` (a setting: a git revision) also runs that revision's station (``git archive`` into the
work folder) in every round and triggered measurement, for a before/after under the same load;
``revision`` runs the measured station from a revision too instead of the working tree (so that other
uncommitted work in a shared tree is not measured with it).

The frame archive is disabled: what it writes depends on how many parts fail, which with random-init
weights means nothing.

Full: bundles small:224:int8, small:224:float32, large:224:int8; 1 and 2 interpreter threads; 4 rounds of
8 s windows; triggered at 10 and 30 fps, 100 triggers each. Quick: small:224:int8 at 1 and 2 threads, 3
rounds of 5 s; triggered at 10 fps, 40 triggers. The load average is recorded per round.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from bench.broker import Counter, ProductionBroker
from bench.common import (
    REPO,
    WORK,
    child_env,
    context,
    cpu_percent,
    log,
    median,
    run_worker,
    sample_process,
    summary,
    write_result,
)
from bench.models import Variant, ensure_bundles, make_video

NAME = "pipeline"
PREFIX = "bench"
LINE = "line"
FULL = {
    "bundles": ["small:224:int8", "small:224:float32", "large:224:int8"],
    "threads": [1, 2],
    "rounds": 4,
    "window_s": 8.0,
    "warmup_s": 2.0,
    "trigger_fps": [10.0, 30.0],
    "triggers": 100,
}
QUICK = {
    "bundles": ["small:224:int8"],
    "threads": [1, 2],
    "rounds": 3,
    "window_s": 5.0,
    "warmup_s": 2.0,
    "trigger_fps": [10.0],
    "triggers": 40,
}
VIDEO = WORK / "video" / "vga-120.avi"


def station_config(bundle: Path, video: Path, broker, station: str, workdir: Path, threads: int) -> dict:
    return {
        "line": LINE,
        "station": station,
        "bundle": str(bundle),
        "source": {"type": "video", "path": str(video), "loop": True},
        "inference": {"threads": threads},
        "mqtt": {"host": broker.host, "port": broker.port, "protocol": "5", "prefix": PREFIX},
        "outbox": {"path": str(workdir / f"{station}.sqlite")},
        "archive": {"enabled": False},
        "log": {"level": "warning"},
    }


def _topic(station: str, leaf: str = "result") -> str:
    return f"{PREFIX}/{LINE}/{station}/{leaf}"


def _window(
    pid: int,
    broker_pid: int,
    counter: Counter,
    topic: str,
    warmup_s: float,
    window_s: float,
    first_timeout: float = 120.0,
) -> dict:
    """Wait for the first result, warm up, then measure one window of results, CPU and memory."""
    if not counter.wait_count(topic, 1, first_timeout):
        raise RuntimeError(f"no result on {topic} within {first_timeout:.0f} s")
    time.sleep(warmup_s)
    s0, b0, t0 = sample_process(pid), sample_process(broker_pid), time.time()
    time.sleep(window_s)
    s1, b1, t1 = sample_process(pid), sample_process(broker_pid), time.time()
    msgs = counter.messages(topic, t0, t1)
    latencies = [arrival - p["capture_ts"] for arrival, p in msgs if p["capture_ts"] >= t0]
    inference = [p["inference_ms"] / 1000 for _, p in msgs]
    return {
        "results": len(msgs),
        "seconds": round(t1 - t0, 3),
        "fps": round(len(msgs) / (t1 - t0), 2),
        "latency_ms": summary(latencies),
        "inference_ms": summary(inference),
        "cpu_percent": cpu_percent(s0, s1) if s0 and s1 else None,
        "cpu_ms_per_frame": round(1000 * (s1.cpu_s - s0.cpu_s) / len(msgs), 3) if s0 and s1 and msgs else None,
        "peak_rss_mb": s1.hwm_mb if s1 else None,
        "rss_mb": s1.rss_mb if s1 else None,
        "broker_cpu_percent": cpu_percent(b0, b1) if b0 and b1 else None,
        "_latencies": latencies,
    }


@dataclass(frozen=True)
class Rig:
    """What every measured process of a run shares: the video, the broker, the subscriber counting results by
    arrival, and the work folder (configs, outboxes, logs)."""

    video: Path
    broker: ProductionBroker
    counter: Counter
    workdir: Path


@contextmanager
def station_process(
    rig: Rig,
    kind: str,
    bundle: Path,
    threads: int,
    overrides: Optional[Dict[str, object]] = None,
    code: Optional[Path] = None,
) -> Iterator[Tuple[str, subprocess.Popen]]:
    """``inspector run`` in its own process for the ``with`` block, as station ``<kind>-<random>`` of
    :func:`station_config` with ``overrides`` (dotted keys), from this checkout or from ``code`` (another
    revision's tree); yields the station name and the process, then stops it with SIGTERM (killed after
    60 s). Its config and log are ``<name>.json`` and ``<name>.log`` in the rig's work folder."""
    from inspector.config import set_dotted

    station = f"{kind}-{uuid.uuid4().hex[:6]}"
    cfg = station_config(bundle, rig.video, rig.broker, station, rig.workdir, threads)
    for key, value in (overrides or {}).items():
        set_dotted(cfg, key, value)
    cfg_path = rig.workdir / f"{station}.json"
    cfg_path.write_text(json.dumps(cfg))
    env = child_env()
    if code is not None:
        env["PYTHONPATH"] = str(code)
    with open(rig.workdir / f"{station}.log", "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "run", "--config", str(cfg_path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=code,
        )
        try:
            yield station, proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def export_revision(rev: str, into: Path) -> Path:
    """The tree of git revision ``rev`` in ``into`` (``git archive``; the working tree is not touched)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_station(
    rig: Rig,
    bundle: Path,
    threads: int,
    warmup_s: float,
    window_s: float,
    overrides: Optional[Dict[str, object]] = None,
    code: Optional[Path] = None,
) -> dict:
    with station_process(rig, "st", bundle, threads, overrides, code) as (station, proc):
        m = _window(proc.pid, rig.broker.pid, rig.counter, _topic(station), warmup_s, window_s)
    time.sleep(0.3)  # the final retained /stats
    stats = rig.counter.messages(_topic(station, "stats"))
    final = stats[-1][1] if stats else {}
    m.update(
        exit_code=proc.returncode,
        frames_captured=final.get("frames_captured"),
        frames_inspected=final.get("frames_inspected"),
        frames_dropped=final.get("frames_dropped"),
    )
    if proc.returncode != 0:
        log(f"station exited with {proc.returncode}; log: {(rig.workdir / f'{station}.log').read_text()[-2000:]}")
    return m


def run_triggered(rig: Rig, bundle: Path, threads: int, fps: float, triggers: int, code: Optional[Path] = None) -> dict:
    """The station in triggered mode on the video paced at ``fps``: trigger publish to result receipt."""
    sent: Dict[str, float] = {}
    rng = random.Random(0)
    interval = 1.0 / fps
    triggered = {"source.fps": fps, "mode": {"type": "triggered", "trigger_timeout_s": 2.0}}
    counter = rig.counter
    with station_process(rig, "tr", bundle, threads, triggered, code) as (station, proc):
        if not counter.wait_count(_topic(station, "event"), 1, 120.0):  # the ``started`` event
            raise RuntimeError(f"station {station} did not start")
        time.sleep(1.0)
        load = os.getloadavg()[0]
        for i in range(triggers):
            part = f"part-{i}"
            sent[part] = time.time()
            counter.client.publish(_topic(station, "cmd"), json.dumps({"cmd": "trigger", "part_id": part}), qos=1)
            time.sleep(rng.uniform(2 * interval, 4 * interval))
        counter.wait_count(_topic(station), triggers, 5.0)
    results = {p["part_id"]: (t, p) for t, p in counter.messages(_topic(station)) if p.get("part_id") in sent}
    total = [t - sent[part] for part, (t, _) in results.items()]
    wait = [p["capture_ts"] - sent[part] for part, (_, p) in results.items()]
    after = [t - p["capture_ts"] for t, p in results.values()]
    inference = [p["inference_ms"] / 1000 for _, p in results.values()]
    m = {
        "fps": fps,
        "frame_interval_ms": round(1000 * interval, 1),
        "triggers": triggers,
        "decided": len(results),
        "load_average_1min": round(load, 2),
        "trigger_to_decision_ms": summary(total),
        "trigger_to_frame_ms": summary(wait),
        "frame_to_decision_ms": summary(after),
        "inference_ms": summary(inference),
        "exit_code": proc.returncode,
    }
    budget = 1000 * interval + m["inference_ms"].get("p50", 0.0) + 10.0
    m["budget_ms"] = round(budget, 2)
    m["goal_met"] = bool(total) and m["trigger_to_decision_ms"]["p99"] <= budget and len(results) == triggers
    return m


def run_naive(rig: Rig, bundle: Path, threads: int, warmup_s: float, window_s: float) -> dict:
    topic = _topic(f"naive-{uuid.uuid4().hex[:6]}")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.naive",
            str(bundle),
            str(rig.video),
            "--host",
            rig.broker.host,
            "--port",
            str(rig.broker.port),
            "--topic",
            topic,
            "--threads",
            str(threads),
            "--seconds",
            str(window_s + warmup_s + 30),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    try:
        return _window(proc.pid, rig.broker.pid, rig.counter, topic, warmup_s, window_s)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _aggregate(rounds: List[dict]) -> dict:
    """Per bundle/threads: medians over rounds, latency percentiles over all rounds' results pooled."""
    out = {}
    for kind in ("interpreter", "station", "naive"):
        items = [r[kind] for r in rounds]
        agg = {"fps_per_round": [i["fps"] for i in items], "fps": round(median([i["fps"] for i in items]), 2)}
        agg["latency_ms"] = summary([x for i in items for x in i["_latencies"]])
        for key in ("cpu_percent", "cpu_ms_per_frame", "peak_rss_mb", "broker_cpu_percent", "frames_dropped"):
            values = [i.get(key) for i in items if i.get(key) is not None]
            if values:
                agg[key] = round(median(values), 2) if key != "frames_dropped" else int(sum(values))
        if kind != "interpreter":
            agg["inference_ms_p50"] = round(median([i["inference_ms"].get("p50") for i in items]), 3)
        out[kind] = agg
    if all("station_before" in r for r in rounds):
        before = [r["station_before"]["fps"] / r["interpreter"]["fps"] for r in rounds]
        out["station_before"] = {
            "fps": round(median([r["station_before"]["fps"] for r in rounds]), 2),
            "latency_ms": summary([x for r in rounds for x in r["station_before"]["_latencies"]]),
            "cpu_ms_per_frame": median([r["station_before"].get("cpu_ms_per_frame") or 0.0 for r in rounds]),
        }
        out["station_before_over_interpreter"] = {
            "per_round": [round(x, 3) for x in before],
            "median": round(median(before), 3),
        }
    ratios = [r["station"]["fps"] / r["interpreter"]["fps"] for r in rounds]
    naive_ratios = [r["naive"]["fps"] / r["interpreter"]["fps"] for r in rounds]
    out["station_over_interpreter"] = {"per_round": [round(x, 3) for x in ratios], "median": round(median(ratios), 3)}
    out["naive_over_interpreter"] = {
        "per_round": [round(x, 3) for x in naive_ratios],
        "median": round(median(naive_ratios), 3),
    }
    ip99, sp99 = out["interpreter"]["latency_ms"]["p99"], out["station"]["latency_ms"]["p99"]
    out["station_p99_over_interpreter_p99"] = round(sp99 / ip99, 2) if ip99 else None
    out["goal_met"] = {
        "throughput_ratio_ge_0.90": out["station_over_interpreter"]["median"] >= 0.90,
        "p99_le_1.5x_interpreter": bool(ip99 and sp99 <= 1.5 * ip99),
    }
    return out


def run(quick: bool, out_dir: Path, settings: Optional[Dict] = None) -> Path:
    started = time.monotonic()
    s = dict(QUICK if quick else FULL, **(settings or {}))
    ctx = context(
        quick,
        settings=s,
        frame_size=[640, 480],
        note="random-init weights; latency = capture_ts to subscriber receipt on the same clock",
    )
    variants = [Variant.parse(b) for b in s["bundles"]]
    built = ensure_bundles(variants)
    video = make_video(VIDEO)
    workdir = WORK / f"pipeline-{uuid.uuid4().hex[:6]}"
    broker = ProductionBroker(workdir / "broker")
    broker.start()
    counter = Counter(broker, [f"{PREFIX}/#"]).start()
    rig = Rig(video, broker, counter, workdir)
    raw: Dict[str, List[dict]] = {}
    before = export_revision(s["compare_with"], workdir / "before") if s.get("compare_with") else None
    after = export_revision(s["revision"], workdir / "after") if s.get("revision") else None
    triggered: Dict[str, List[dict]] = {}
    try:
        for r in range(s["rounds"]):
            for v in variants:
                for threads in s["threads"]:
                    key = f"{v}@{threads}"
                    probe = run_worker(
                        "bench.probe",
                        ["throughput", str(v.path), "--threads", str(threads), "--seconds", str(s["window_s"])],
                        timeout=600,
                    )
                    interp = {
                        "fps": probe["throughput_fps"],
                        "latency_ms": probe["latency_ms"],
                        "cpu_percent": probe["cpu_percent"],
                        "cpu_ms_per_frame": probe["cpu_ms_per_frame"],
                        "_latencies": probe["latencies_s"],
                    }
                    st = run_station(
                        rig, v.path, threads, s["warmup_s"], s["window_s"], s.get("station_set"), code=after
                    )
                    nv = run_naive(rig, v.path, threads, s["warmup_s"], s["window_s"])
                    raw.setdefault(key, []).append({"interpreter": interp, "station": st, "naive": nv})
                    if before is not None:  # the same station of another revision, in the same round
                        raw[key][-1]["station_before"] = run_station(
                            rig, v.path, threads, s["warmup_s"], s["window_s"], code=before
                        )
                    log(
                        f"round {r + 1} {key}: interpreter {interp['fps']:.1f} fps, station {st['fps']:.1f} fps "
                        f"(p99 {st['latency_ms'].get('p99')} ms, dropped {st['frames_dropped']}), naive "
                        f"{nv['fps']:.1f} fps"
                    )
                    raw[key][-1]["load_average_1min"] = round(os.getloadavg()[0], 2)
                    counter.clear()
        for v in variants:
            for fps in s.get("trigger_fps", []):
                for code in [after] if before is None else [after, before]:
                    tr = run_triggered(rig, v.path, s["threads"][0], fps, s["triggers"], code)
                    is_before = before is not None and code is before
                    tr["code"] = s["compare_with"] if is_before else s.get("revision", "this checkout")
                    triggered.setdefault(f"{v}@{s['threads'][0]}", []).append(tr)
                    t = tr["trigger_to_decision_ms"]
                    log(
                        f"triggered {v} at {fps:g} fps ({tr['code']}): trigger to decision p50 {t.get('p50')} / "
                        f"p99 {t.get('p99')} ms (budget {tr['budget_ms']} ms), {tr['decided']} of {tr['triggers']}"
                    )
                    counter.clear()
    finally:
        counter.stop()
        broker.stop()
    rows = []
    for key, rounds in raw.items():
        variant, threads = key.split("@")
        v = Variant.parse(variant)
        agg = _aggregate(rounds)
        stages = run_worker(
            "bench.probe",
            ["stages", str(v.path), "--video", str(video), "--threads", threads, "--reps", "200"],
            timeout=600,
        )
        rows.append(
            {
                "arch": v.arch,
                "size": v.size,
                "precision": v.precision,
                "threads": int(threads),
                **agg,
                "stages_ms": {k: v for k, v in stages.items() if isinstance(v, dict)},
                "triggered": triggered.get(key, []),
                "load_average_per_round": [x.get("load_average_1min") for x in rounds],
                "rounds": [_public(x) for x in rounds],
            }
        )
    shutil.rmtree(workdir, ignore_errors=True)
    return write_result(out_dir, NAME, ctx, {"built_this_run": built, "rows": rows}, started)


def _public(measurement: dict) -> dict:
    return {
        kind: {k: v for k, v in m.items() if not k.startswith("_")} if isinstance(m, dict) else m
        for kind, m in measurement.items()
    }
