"""Run the benchmarks: interpreter limit, station pipeline vs naive loop, outbox/MQTT, cold start, training.

Each benchmark writes bench/results/<quick|full>/<name>.json (with the machine's load average at the
start: this machine may be shared, so compare numbers within one file) and `all` then rewrites the summary
tables in bench/README.md. Models are random-init MobileNetV3 bundles built with the product's own build
and conversion code and cached in bench/work/ (gitignored). `all` runs each benchmark in its own process,
so TensorFlow (model building, training) never shares a process with a latency measurement.

  interpreter  set-input + invoke + get-output latency, Small/Large x sizes x INT8/float16/float32 x 1/2 threads
  pipeline     the station (video -> model -> outbox -> Mosquitto) vs interpreter-only vs a naive loop
  outbox       results/s through the durable outbox to Mosquitto, and the drain after a broker outage
  coldstart    process start to first published result; bundle load time
  training     seconds per epoch and images/s, Small/Large at 224 and 128
  loadgen      50 stations x 20 results/s into one broker, the real line controller and monitor: decision
               p99, loss, CPU per process; the full run raises the load step by step until it breaks
  all          every one of the above, then the README tables
  report       only rewrite the README tables from the JSON files

--quick uses fewer sizes, bundles and repetitions (bench/README.md lists them) and finishes in under
10 minutes on two cores once nothing else is running.

Examples:
  python -m bench all --quick         (at the repository root; `inspector bench` does the same from a checkout)
  python -m bench pipeline
  python -m bench outbox --quick --out /tmp/bench
"""

from __future__ import annotations

import argparse

BENCHMARKS = ("interpreter", "pipeline", "outbox", "coldstart", "training", "loadgen")
MODULES = {
    "interpreter": "bench.interpreter",
    "pipeline": "bench.pipeline",
    "outbox": "bench.outbox_mqtt",
    "coldstart": "bench.coldstart",
    "training": "bench.train_speed",
    "loadgen": "bench.loadgen",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("benchmark", choices=BENCHMARKS + ("all", "report"), help="which benchmark to run")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repetitions (under 10 min for all)")
    parser.add_argument("--out", metavar="DIR", help="results folder (default bench/results/quick or .../full)")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the tables in bench/README.md")


def run(args: argparse.Namespace) -> int:
    import importlib
    import subprocess
    import sys
    import time

    from bench.common import child_env, log, results_dir

    out_dir = results_dir(args.quick, args.out)
    if args.benchmark in BENCHMARKS:
        importlib.import_module(MODULES[args.benchmark]).run(args.quick, out_dir)
    elif args.benchmark == "all":
        started = time.monotonic()
        failed = []
        for name in BENCHMARKS:
            log(f"=== {name} ===")
            cmd = [sys.executable, "-m", "bench", name, "--out", str(out_dir), "--no-readme"]
            if subprocess.run(cmd + (["--quick"] if args.quick else []), env=child_env()).returncode != 0:
                failed.append(name)
        log(f"all benchmarks done in {time.monotonic() - started:.0f} s" + (f"; FAILED: {failed}" if failed else ""))
        if failed:
            return 1
    if not args.no_readme and args.out is None:
        from bench.report import update_readme

        update_readme()
    return 0
