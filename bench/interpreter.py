"""Benchmark 1, the interpreter limit: model latency per architecture, input size, precision and threads.

For MobileNetV3 Small and Large, each input size and INT8 / float16 / float32 exports of the same
random-init model (see :mod:`bench.models`), a fresh TensorFlow-free process (:mod:`bench.probe`)
times set-input + invoke + get-output with the edge's backend at 1 and 2 threads (interleaved blocks),
and records the model size on disk, the process memory with one interpreter loaded, and how the model
is split between the XNNPACK delegate and TFLite's own kernels (:mod:`inspector.delegation`: partitions,
and the ops left outside them). A full-integer INT8 model is fast only as one partition.

Full: sizes 224, 160, 128, 96 and 300 invocations per thread count. Quick: size 224 only, 100 invocations.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.common import context, log, run_worker, write_result
from bench.models import ARCHS, PRECISIONS, Variant, ensure_bundles

NAME = "interpreter"
SIZES = (224, 160, 128, 96)
QUICK_SIZES = (224,)
THREADS = (1, 2)


def plan(quick: bool):
    sizes = QUICK_SIZES if quick else SIZES
    return [Variant(arch, size, precision) for arch in ARCHS for size in sizes for precision in PRECISIONS]


def run(quick: bool, out_dir: Path) -> Path:
    started = time.monotonic()
    ctx = context(quick, note="random-init weights (latency does not depend on weight values)", threads=list(THREADS))
    variants = plan(quick)
    built = ensure_bundles(variants)
    reps = 100 if quick else 300
    rows = []
    for v in variants:
        probe = run_worker(
            "bench.probe", ["latency", str(v.path), "--threads", *map(str, THREADS), "--reps", str(reps)], timeout=1800
        )
        row = {
            "arch": v.arch,
            "size": v.size,
            "precision": v.precision,
            "model_mb": round(probe["model_bytes"] / 1e6, 3),
            **{
                k: probe[k]
                for k in (
                    "backend",
                    "input_dtype",
                    "rss_before_load_mb",
                    "rss_one_interpreter_mb",
                    "peak_rss_one_interpreter_mb",
                    "model_memory_mb",
                )
            },
            "delegation": probe["delegation"],
            "load_average": [round(x, 2) for x in os.getloadavg()],  # after the probe: shared machine
            "threads": probe["threads"],
        }
        rows.append(row)
        t1, t2 = probe["threads"]["1"]["latency_ms"], probe["threads"]["2"]["latency_ms"]
        log(
            f"{v}: 1 thread p50 {t1['p50']:.2f} ms p99 {t1['p99']:.2f}; 2 threads p50 {t2['p50']:.2f} ms "
            f"p99 {t2['p99']:.2f}; {row['model_mb']:.2f} MB, peak RSS {row['peak_rss_one_interpreter_mb']} MB; "
            f"{probe['delegation']['partitions']} XNNPACK partition(s), outside: {probe['delegation']['outside']}"
        )
    return write_result(out_dir, NAME, ctx, {"built_this_run": built, "reps": reps, "rows": rows}, started)
