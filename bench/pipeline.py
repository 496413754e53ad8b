"""Benchmarks 2 and 3: the whole station against the interpreter limit and against the naive loop.

In each round, for each bundle, three measurements run one after the other on the same machine:

* **interpreter only** - :mod:`bench.probe` invokes the bundle's model back to back on a preprocessed
  frame (the limit the station could reach);
* **station** - ``inspector run`` in its own process: a VGA MJPG video file read at full speed (replay
  source, every frame inspected), preprocessing, interpreter, decision, the durable outbox (SQLite,
  ``synchronous=full`` as shipped) and MQTT QoS 1 to the production-configured Mosquitto on loopback, with
  a subscriber counting results by arrival;
* **naive loop** - :mod:`bench.naive`: read, preprocess, invoke, publish and wait for the PUBACK.

After a warm-up, each is measured over the same window: results arriving per second at the subscriber,
capture-to-arrival latency (``capture_ts`` in the payload to the subscriber's receipt, the same machine
clock; the broker acknowledges the publisher while it forwards, so this is capture-to-broker-ack plus one
loopback hop), the process's CPU use and peak resident memory, and the frames the station dropped
(``frames_dropped`` of its final /stats). Rounds interleave the three, so a burst of load from other work
hits all of them; the reported ratio is the median over rounds of station fps / interpreter fps. The
cost of each stage alone (video decode, preprocessing, model, result JSON; :mod:`bench.probe` ``stages``)
is measured once per bundle and thread count, to show where a frame's time goes.

The frame archive is disabled: what it writes depends on how many parts fail, which with random-init
weights means nothing.

Full: bundles small:224:int8, small:224:float32, large:224:int8; 1 and 2 interpreter threads; 4 rounds of
8 s windows. Quick: small:224:int8 at 1 and 2 threads, 3 rounds of 5 s.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional

from bench.broker import Counter, ProductionBroker
from bench.common import (
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
}
QUICK = {"bundles": ["small:224:int8"], "threads": [1, 2], "rounds": 3, "window_s": 5.0, "warmup_s": 2.0}
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


def run_station(
    bundle: Path,
    video: Path,
    broker,
    counter: Counter,
    workdir: Path,
    threads: int,
    warmup_s: float,
    window_s: float,
    overrides: Optional[Dict[str, object]] = None,
) -> dict:
    from inspector.config import set_dotted

    station = f"st-{uuid.uuid4().hex[:6]}"
    cfg_path = workdir / f"{station}.json"
    cfg = station_config(bundle, video, broker, station, workdir, threads)
    for key, value in (overrides or {}).items():
        set_dotted(cfg, key, value)
    cfg_path.write_text(json.dumps(cfg))
    log_file = open(workdir / f"{station}.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--config", str(cfg_path)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=child_env(),
    )
    try:
        m = _window(proc.pid, broker.pid, counter, _topic(station), warmup_s, window_s)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()
    time.sleep(0.3)  # the final retained /stats
    stats = counter.messages(_topic(station, "stats"))
    final = stats[-1][1] if stats else {}
    m.update(
        exit_code=proc.returncode,
        frames_captured=final.get("frames_captured"),
        frames_inspected=final.get("frames_inspected"),
        frames_dropped=final.get("frames_dropped"),
    )
    if proc.returncode != 0:
        log(f"station exited with {proc.returncode}; log: {(workdir / f'{station}.log').read_text()[-2000:]}")
    return m


def run_naive(
    bundle: Path, video: Path, broker, counter: Counter, threads: int, warmup_s: float, window_s: float
) -> dict:
    topic = _topic(f"naive-{uuid.uuid4().hex[:6]}")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.naive",
            str(bundle),
            str(video),
            "--host",
            broker.host,
            "--port",
            str(broker.port),
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
        return _window(proc.pid, broker.pid, counter, topic, warmup_s, window_s)
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
    raw: Dict[str, List[dict]] = {}
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
                        v.path,
                        video,
                        broker,
                        counter,
                        workdir,
                        threads,
                        s["warmup_s"],
                        s["window_s"],
                        s.get("station_set"),
                    )
                    nv = run_naive(v.path, video, broker, counter, threads, s["warmup_s"], s["window_s"])
                    raw.setdefault(key, []).append({"interpreter": interp, "station": st, "naive": nv})
                    log(
                        f"round {r + 1} {key}: interpreter {interp['fps']:.1f} fps, station {st['fps']:.1f} fps "
                        f"(p99 {st['latency_ms'].get('p99')} ms, dropped {st['frames_dropped']}), naive "
                        f"{nv['fps']:.1f} fps"
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
                "stages_ms": {k: stages[k] for k in ("decode", "preprocess", "model", "result_json")},
                "rounds": [_public(x) for x in rounds],
            }
        )
    shutil.rmtree(workdir, ignore_errors=True)
    return write_result(out_dir, NAME, ctx, {"built_this_run": built, "rows": rows}, started)


def _public(measurement: dict) -> dict:
    return {kind: {k: v for k, v in m.items() if not k.startswith("_")} for kind, m in measurement.items()}
