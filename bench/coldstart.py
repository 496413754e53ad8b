"""Benchmark 5: cold start (process start to the first published result) and bundle load time.

* **cold start** - ``inspector run`` is started as a new process (the station config of the pipeline
  benchmark: VGA video file, production-configured Mosquitto on loopback) and timed from just before
  the process is spawned to the arrival of its first result at a subscriber: Python start, imports,
  outbox open, bundle load and verification, interpreter creation and self-test inference, broker
  connect, first frame. Files are in the page cache after the first repetition (a warm start after a
  reboot of the process, not of the device); the first repetition is reported separately.
* **bundle load** - in a fresh process (:mod:`bench.probe` ``load``): reading and verifying the bundle
  (SHA-256), creating the interpreter, the first inference, and the import time of the edge modules.

Full: 7 starts, bundles small/large at 224 in INT8 and float32, 10 loads each. Quick: 3 starts with
small:224:int8, loads of small and large 224 INT8, 5 each.
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

from bench.broker import Counter, ProductionBroker
from bench.common import WORK, child_env, context, log, run_worker, summary, write_result
from bench.models import Variant, ensure_bundles, make_video
from bench.pipeline import VIDEO, station_config

NAME = "coldstart"
STATION_BUNDLE = "small:224:int8"


def cold_start(bundle: Path, video: Path, broker, counter: Counter, workdir: Path) -> dict:
    station = f"cold-{uuid.uuid4().hex[:6]}"
    cfg_path = workdir / f"{station}.json"
    cfg_path.write_text(json.dumps(station_config(bundle, video, broker, station, workdir, threads=2)))
    topic = f"bench/line/{station}/result"
    start = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--config", str(cfg_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    try:
        if not counter.wait_count(topic, 1, 120):
            raise RuntimeError("the station published no result within 120 s")
        arrival, first = counter.messages(topic)[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return {"to_first_result_s": round(arrival - start, 3), "to_first_capture_s": round(first["capture_ts"] - start, 3)}


def run(quick: bool, out_dir: Path) -> Path:
    started = time.monotonic()
    starts = 3 if quick else 7
    loads = 5 if quick else 10
    load_bundles = ["small:224:int8", "large:224:int8"] + ([] if quick else ["small:224:float32", "large:224:float32"])
    ctx = context(quick, starts=starts, loads=loads, station_bundle=STATION_BUNDLE)
    variants = [Variant.parse(b) for b in set(load_bundles + [STATION_BUNDLE])]
    built = ensure_bundles(variants)
    video = make_video(VIDEO)
    workdir = WORK / f"coldstart-{uuid.uuid4().hex[:6]}"
    broker = ProductionBroker(workdir / "broker")
    broker.start()
    counter = Counter(broker, ["bench/#"]).start()
    try:
        runs = [cold_start(Variant.parse(STATION_BUNDLE).path, video, broker, counter, workdir) for _ in range(starts)]
    finally:
        counter.stop()
        broker.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    first_result = [r["to_first_result_s"] for r in runs]
    log(f"cold start to first result: {', '.join(f'{x:.2f}' for x in first_result)} s")
    load_rows = []
    for name in load_bundles:
        probe = run_worker("bench.probe", ["load", str(Variant.parse(name).path), "--reps", str(loads)], timeout=600)
        load_rows.append({"bundle": name, **probe})
        log(
            f"load {name}: bundle {probe['bundle_load']['p50']:.1f} ms, interpreter "
            f"{probe['interpreter_create']['p50']:.1f} ms, first inference {probe['first_inference']['p50']:.1f} ms"
        )
    results = {
        "built_this_run": built,
        "cold_start": {
            "bundle": STATION_BUNDLE,
            "runs": runs,
            "first_run_s": first_result[0],
            "to_first_result_s": summary(first_result, scale=1.0),
            "to_first_capture_s": summary([r["to_first_capture_s"] for r in runs], scale=1.0),
        },
        "bundle_load": load_rows,
    }
    return write_result(out_dir, NAME, ctx, results, started)
