"""Worker process: the interpreter limit of one bundle, and bundle load time, with the edge's own classes.

Runs in a fresh interpreter without TensorFlow, so its memory is what a station's model costs. The timed
call is :meth:`inspector.inference.ModelRunner.run` on an already preprocessed frame: set the input
(quantizing if needed), invoke, read and dequantize the output; nothing else. Thread counts are measured
in interleaved blocks inside one process, so a burst of load from other work on the machine hits all of
them alike.

  python -m bench.probe latency BUNDLE --threads 1 2 --reps 200
  python -m bench.probe throughput BUNDLE --threads 2 --seconds 5
  python -m bench.probe load BUNDLE --reps 5
  python -m bench.probe stages BUNDLE --video VIDEO --threads 2 --reps 200
Each prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List

BLOCK = 10  # invocations per thread count before switching to the next


def _rss_mb() -> dict:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return {"rss_mb": out.get("VmRSS"), "peak_rss_mb": out.get("VmHWM")}


def _frame(spec):
    """A real camera-sized frame, preprocessed the way the station does it."""
    import numpy as np

    from inspector.preprocess import Preprocessor

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    return Preprocessor(spec).prepare(raw, "bgr")


def latency(bundle_path: str, threads: List[int], reps: int, warmup: int = 10) -> dict:
    from bench.common import summary
    from inspector.bundle import Bundle
    from inspector.delegation import delegation
    from inspector.inference import ModelRunner

    before = _rss_mb()
    bundle = Bundle.load(bundle_path)
    runners = {}
    memory = {}
    for n in threads:
        runners[n] = ModelRunner(bundle.model, threads=n)
        if not memory:  # memory of the first interpreter alone, after its first inference
            runners[n].run(_frame(bundle.manifest.preprocess))
            memory = _rss_mb()
    frame = _frame(bundle.manifest.preprocess)
    for runner in runners.values():
        for _ in range(warmup):
            runner.run(frame)
    times = {n: [] for n in threads}
    busy = {n: 0.0 for n in threads}
    while any(len(t) < reps for t in times.values()):
        for n, runner in runners.items():
            block_start = time.perf_counter()
            for _ in range(min(BLOCK, reps - len(times[n]))):
                start = time.perf_counter()
                runner.run(frame)
                times[n].append(time.perf_counter() - start)
            busy[n] += time.perf_counter() - block_start
    out = {
        "bundle": bundle_path,
        "backend": next(iter(runners.values())).backend.value,
        "precision": bundle.manifest.precision.value,
        "model_bytes": len(bundle.model),
        "input_dtype": str(next(iter(runners.values())).input_dtype),
        "rss_before_load_mb": before["rss_mb"],
        "rss_one_interpreter_mb": memory["rss_mb"],
        "peak_rss_one_interpreter_mb": memory["peak_rss_mb"],
        "model_memory_mb": round(memory["rss_mb"] - before["rss_mb"], 1),
        "threads": {},
    }
    for n in threads:
        out["threads"][str(n)] = {"latency_ms": summary(times[n]), "throughput_fps": round(len(times[n]) / busy[n], 2)}
    out["delegation"] = delegation(bundle.model).describe()  # after the memory figures: it loads the model again
    return out


def throughput(bundle_path: str, threads: int, seconds: float) -> dict:
    """Back-to-back invocations for ``seconds``: the interpreter-only frames per second."""
    from bench.common import summary
    from inspector.bundle import Bundle
    from inspector.inference import ModelRunner

    bundle = Bundle.load(bundle_path)
    runner = ModelRunner(bundle.model, threads=threads)
    frame = _frame(bundle.manifest.preprocess)
    for _ in range(10):
        runner.run(frame)
    times = []
    cpu = time.process_time()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        runner.run(frame)
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    return {
        "threads": threads,
        "seconds": round(wall, 3),
        "invocations": len(times),
        "throughput_fps": round(len(times) / wall, 2),
        "latency_ms": summary(times),
        "cpu_percent": round(100 * cpu / wall, 1),
        "cpu_ms_per_frame": round(1000 * cpu / len(times), 3),
        "latencies_s": [round(t, 6) for t in times],
    }


def stages(bundle_path: str, video: str, threads: int, reps: int) -> dict:
    """Each stage of the station's per-frame work alone, in the station's order and with its classes.

    Capture thread: ``grab`` (read and decode the MJPG packet: OpenCV's FFmpeg backend decodes in grab),
    ``retrieve`` (the decoded picture converted to a BGR array), ``preprocess`` (ROI, resize, channel
    order: :class:`inspector.preprocess.Preprocessor`), ``gate`` (the plausibility check). Inspection
    loop: ``set_input`` (the model input written into the interpreter's tensor), ``invoke``, ``decide``
    (output dequantized, scores, verdict), ``publish`` (the Result built and serialised; the outbox writer
    and the MQTT client take it from there in their own threads). ``decode`` (grab + retrieve) and
    ``model`` (set_input + invoke + output) are kept as the sums the report's table shows.
    """
    import uuid

    import cv2

    from bench.common import summary
    from inspector.bundle import Bundle
    from inspector.inference import Classifier
    from inspector.inspection import bundle_gate
    from inspector.protocol.payloads import ModelRef, Result

    clf = Classifier(Bundle.load(bundle_path), threads=threads)
    gate = bundle_gate(clf.bundle.manifest)
    runner = clf.runner
    cap = cv2.VideoCapture(video)
    keys = ("grab", "retrieve", "preprocess", "gate", "set_input", "invoke", "decide", "publish")
    times: dict = {k: [] for k in keys}
    for _ in range(reps):
        t0 = time.perf_counter()
        if not cap.grab():
            cap.release()
            cap = cv2.VideoCapture(video)
            cap.grab()
        t1 = time.perf_counter()
        _, frame = cap.retrieve()
        t2 = time.perf_counter()
        prepared = clf.preprocessor.prepare(frame, "bgr")
        t3 = time.perf_counter()
        if gate is not None:
            gate.check(prepared, frame)
        t4 = time.perf_counter()
        runner.set_input(prepared)
        t5 = time.perf_counter()
        runner.interpreter.invoke()
        t6 = time.perf_counter()
        c = clf._classification(runner.output(), (t6 - t4) * 1000.0, (t3 - t2) * 1000.0)
        t7 = time.perf_counter()
        Result(
            id=uuid.uuid4().hex,
            seq=1,
            line="l",
            station="s",
            verdict=c.verdict.value,
            defect_score=c.defect_score,
            threshold=0.5,
            top_class=c.top_class,
            top_score=c.top_score,
            scores=c.scores,
            model=ModelRef(name="m", version="v", sha256="0" * 12),
            captured_at="2025-01-01T00:00:00.000Z",
            capture_ts=time.time(),
            inference_ms=c.inference_ms,
        ).to_json()
        t8 = time.perf_counter()
        marks = (t0, t1, t2, t3, t4, t5, t6, t7, t8)
        for key, a, b in zip(keys, marks, marks[1:]):
            times[key].append(b - a)
    sums = {
        "decode": [a + b for a, b in zip(times["grab"], times["retrieve"])],
        "model": [a + b + c for a, b, c in zip(times["set_input"], times["invoke"], times["decide"])],
        "result_json": times["publish"],
    }
    return {
        "threads": threads,
        "frame_shape": list(frame.shape),
        **{k: summary(v) for k, v in {**times, **sums}.items()},
    }


def load(bundle_path: str, reps: int) -> dict:
    """Bundle load (read + verify checksum), interpreter creation and first inference, each timed."""
    start = time.perf_counter()
    import numpy as np

    from inspector.bundle import Bundle
    from inspector.inference import Classifier

    imports = time.perf_counter() - start
    steps = {"bundle_load": [], "interpreter_create": [], "first_inference": []}
    for _ in range(reps):
        t0 = time.perf_counter()
        bundle = Bundle.load(bundle_path)
        t1 = time.perf_counter()
        clf = Classifier(bundle)
        t2 = time.perf_counter()
        spec = bundle.manifest.preprocess
        clf.classify(np.full((spec.height, spec.width, 3), 128, np.uint8), order="rgb")
        t3 = time.perf_counter()
        steps["bundle_load"].append(t1 - t0)
        steps["interpreter_create"].append(t2 - t1)
        steps["first_inference"].append(t3 - t2)
        del clf, bundle
    from bench.common import summary

    return {"edge_imports_ms": round(imports * 1000, 1), **{k: summary(v) for k, v in steps.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.probe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["latency", "throughput", "load", "stages"])
    parser.add_argument("bundle")
    parser.add_argument("--video", help="stages: the video file to decode")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.mode == "latency":
        out = latency(args.bundle, args.threads, args.reps)
    elif args.mode == "throughput":
        out = throughput(args.bundle, args.threads[0], args.seconds)
    elif args.mode == "stages":
        out = stages(args.bundle, args.video, args.threads[0], args.reps)
    else:
        out = load(args.bundle, args.reps)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
