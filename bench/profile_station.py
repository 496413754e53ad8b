"""Where the station's inspection loop spends its time: cProfile of the main thread of a running station.

Runs :class:`edge.runtime.Station` in this process with the pipeline benchmark's configuration (video
file at full speed, production-configured Mosquitto on loopback, outbox ``synchronous=full``), profiles
the inspection loop (the main thread; capture, paho and the outbox drain run in their own threads) with
cProfile's wall clock for ``--seconds`` and prints the functions that take the most time per inspected
frame, then the capture-to-subscriber latency and how long the outbox's commits took (each commit waits
for a disk sync with ``synchronous=full``; that is where the latency tail comes from). For a view of every thread, attach a sampling profiler to ``inspector run`` instead, e.g.
``py-spy record --idle --threads -p PID`` (py-spy is not a dependency of the product).

  python -m bench.profile_station --bundle small:224:float32 --seconds 20 --threads 2
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import sys
import threading
import time
import uuid

from bench.broker import ProductionBroker
from bench.common import WORK
from bench.models import Variant, ensure_bundles, make_video
from bench.pipeline import VIDEO, station_config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile_station",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bundle", default="small:224:int8", help="ARCH:SIZE:PRECISION (default small:224:int8)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="station config override, e.g. --set outbox.synchronous=normal",
    )
    parser.add_argument("--save", metavar="FILE", help="also write the cProfile stats (snakeviz, pstats)")
    args = parser.parse_args(argv)

    import edge.runtime
    from bench.broker import Counter
    from bench.common import summary
    from edge.config import StationConfig
    from edge.outbox import Outbox
    from edge.runtime import Station
    from inspector.config import parse_override, set_dotted

    commits = {"add_many": [], "ack": []}

    class TimedOutbox(Outbox):
        """The station's outbox, timing each commit (the disk sync is where latency tails come from)."""

        def add_many(self, items):
            start = time.perf_counter()
            try:
                return super().add_many(items)
            finally:
                commits["add_many"].append(time.perf_counter() - start)

        def ack(self, rowids):
            start = time.perf_counter()
            try:
                return super().ack(rowids)
            finally:
                commits["ack"].append(time.perf_counter() - start)

    edge.runtime.Outbox = TimedOutbox

    variant = Variant.parse(args.bundle)
    ensure_bundles([variant])
    video = make_video(VIDEO)
    workdir = WORK / f"profile-{uuid.uuid4().hex[:6]}"
    broker = ProductionBroker(workdir / "broker")
    broker.start()
    try:
        data = station_config(variant.path, video, broker, "profiled", workdir, args.threads)
        for text in args.overrides:
            key, value = parse_override(text)
            set_dotted(data, key, value)
        counter = Counter(broker, ["bench/line/profiled/result"]).start()
        station = Station(StationConfig.model_validate(data))
        threading.Timer(args.seconds, station.request_stop, args=("profile time is up",)).start()
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        code = station.run()
        profiler.disable()
        elapsed = time.perf_counter() - started
        latency = [t - p["capture_ts"] for t, p in counter.messages("bench/line/profiled/result")]
        counter.stop()
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    frames = station.stats.inspected
    print(
        f"exit code {code}; {frames} frames in {elapsed:.1f} s ({frames / elapsed:.1f} fps) including setup "
        f"and shutdown; times below are per inspected frame (ms) and % of the loop's wall time"
    )
    stats = pstats.Stats(profiler)
    if args.save:
        stats.dump_stats(args.save)
    rows = []
    for (filename, line, func), (_, nc, tt, ct, _) in stats.stats.items():
        rows.append((ct, tt, nc, f"{filename.rsplit('/', 2)[-1] if '/' in filename else filename}:{line}({func})"))
    rows.sort(reverse=True)
    out = io.StringIO()
    print(f"{'cumulative ms/frame':>20} {'own ms/frame':>13} {'calls':>8} {'%':>6}  function", file=out)
    for ct, tt, nc, name in rows[: args.top]:
        print(
            f"{1000 * ct / max(frames, 1):20.3f} {1000 * tt / max(frames, 1):13.3f} {nc:8d} "
            f"{100 * ct / elapsed:6.1f}  {name}",
            file=out,
        )
    print(out.getvalue())
    print(f"capture to subscriber latency ms: {summary(latency)}")
    for name, values in commits.items():
        print(f"outbox {name} commit ms: {summary(values)}, max {1000 * max(values, default=0):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
