"""Live terminal view of every station and line controller on a broker: rates, yield, latency, camera, state.

Rows are built from the stations' retained status/stats and their live results and events, so the screen
is full within a second of starting; results per minute are counted over --window, or over the time
listened when that is shorter (--once). Rows turn red when a station is offline (its fps and rate are
then blank) or its camera is lost or failed, yellow when it is paused or a camera check (focus, exposure)
is active (CAMERA says check), and red when a controller has stopped the line. The screen fits 80
columns. Plain ANSI repaint, no curses: works over any SSH. Logs only warnings (all with -v).

Example:
  inspector monitor --broker 10.0.0.5
  inspector monitor --config line.yaml --line line1
  inspector monitor --broker localhost:1884 --once            # print one snapshot and exit (scripts, tests)
  inspector monitor --duration 30 --interval 2
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from inspector.mqtt import add_broker_arguments

    add_broker_arguments(parser)
    parser.add_argument("--host", help=argparse.SUPPRESS)  # before --broker; kept so old scripts still run
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--line", default="+", help="only this line (default: all lines)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between repaints (default 1)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds over which results/min is counted")
    parser.add_argument("--once", action="store_true", help="collect for --wait seconds, print once, exit")
    parser.add_argument("--wait", type=float, default=2.0, help="with --once: how long to collect (default 2)")
    parser.add_argument("--duration", type=float, help="exit after this many seconds")
    parser.add_argument("--no-color", action="store_true", help="no ANSI colours")


def run(args: argparse.Namespace) -> int:
    import logging
    import os
    import sys
    import time
    import uuid

    from controller.monitor import CLEAR, LineMonitor, render
    from inspector.mqtt import BrokerClient, mqtt_config_from_arguments

    if not getattr(args, "verbose", False):  # the screen is the output: no "connected" lines on stderr
        logging.getLogger().setLevel(logging.WARNING)
    cfg = mqtt_config_from_arguments(args)
    monitor = LineMonitor(window_s=args.window, started=time.monotonic())
    client = BrokerClient(cfg, f"inspector-monitor-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    client.on_connect(lambda _: client.client.subscribe(monitor.subscriptions(cfg.prefix, args.line)))
    client.client.on_message = lambda c, u, msg: monitor.handle(msg.topic, msg.payload)
    if not client.start(timeout=10.0):
        client.stop()
        raise RuntimeError(f"cannot connect to the broker at {cfg.host}:{cfg.port}")
    color = not args.no_color and sys.stdout.isatty()
    try:
        if args.once:
            time.sleep(args.wait)
            sys.stdout.write(render(monitor, color=color))
            return 0
        end = None if args.duration is None else time.monotonic() + args.duration
        while end is None or time.monotonic() < end:
            sys.stdout.write((CLEAR if sys.stdout.isatty() else "") + render(monitor, color=color))
            sys.stdout.flush()
            time.sleep(args.interval if end is None else max(0.0, min(args.interval, end - time.monotonic())))
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        client.stop()
