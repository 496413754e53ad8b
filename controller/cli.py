"""Run the reference line controller: station results in, reject-gate commands out.

It subscribes to every station of the line with a persistent MQTT session (results published while it is
down are delivered when it is back), drops duplicate results, rejects failed parts, rejects a triggered
part whose result does not come within result_deadline_s, applies the offline policy (reject or stop),
and publishes its counts on <prefix>/<line>/<controller_id>/state. With trigger.rate_hz (or --trigger-rate)
it also triggers the stations itself, for tests and the demo. With sparkplug.enabled it bridges the
stations into Sparkplug B as well (--sparkplug-only runs just the bridge).

Example:
  inspector controller --config deploy/line.local.yaml     # on this machine (production: deploy/line.example.yaml)
  inspector controller --config line.yaml --trigger-rate 2 --count 20 --until-done
  inspector controller --config line.yaml --set mqtt.port=1884 --duration 60
"""

from __future__ import annotations

import argparse
import sys

from inspector.exitcodes import ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, help="line configuration (YAML, see deploy/line.example.yaml)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set mqtt.host=10.0.0.5 (repeatable)",
    )
    parser.add_argument(
        "--broker", metavar="HOST[:PORT]", help="MQTT broker; same as --set mqtt.host=HOST --set mqtt.port=PORT"
    )
    parser.add_argument("--trigger-rate", type=float, help="send this many triggers per second (trigger.rate_hz)")
    parser.add_argument("--count", type=int, help="stop triggering after this many parts (trigger.count)")
    parser.add_argument("--duration", type=float, help="exit after this many seconds (default: run until stopped)")
    parser.add_argument(
        "--until-done", action="store_true", help="exit once --count parts have been triggered and decided"
    )
    parser.add_argument(
        "--sparkplug-only", action="store_true", help="run only the Sparkplug B bridge (no decisions, no gate)"
    )


def _load(args: argparse.Namespace):
    from controller.config import LineConfig
    from inspector.config import load_config, parse_override
    from inspector.mqtt import parse_broker

    overrides: dict = {}
    if args.broker:
        host, port = parse_broker(args.broker)
        overrides["mqtt.host"] = host
        if port is not None:
            overrides["mqtt.port"] = port
    overrides.update(parse_override(item) for item in args.set)
    if args.trigger_rate is not None:
        overrides["trigger.rate_hz"] = args.trigger_rate
    if args.count is not None:
        overrides["trigger.count"] = args.count
    return load_config(LineConfig, args.config, overrides)


def run(args: argparse.Namespace) -> int:
    import signal
    import threading
    import time

    try:
        cfg = _load(args)
    except ValueError as exc:  # ConfigError, or a --set that does not parse: the message names the key
        print(f"inspector controller: configuration error:\n{exc}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    if args.until_done and not (cfg.trigger.rate_hz > 0 and cfg.trigger.count > 0):
        print(
            "inspector controller: --until-done needs a trigger rate and a count (--trigger-rate, --count)",
            file=sys.stderr,
        )
        return int(ExitCode.CONFIG)
    stop_event = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_event.set())

    bridge = None
    if cfg.sparkplug.enabled or args.sparkplug_only:
        from controller.sparkplug import SparkplugBridge

        bridge = SparkplugBridge.from_line_config(cfg)
        bridge.start()
    try:
        if args.sparkplug_only:
            from inspector.sdnotify import Notifier

            notifier = Notifier()
            notifier.ready("sparkplug bridge running")
            end = None if args.duration is None else time.monotonic() + args.duration
            while not stop_event.wait(0.5) and (end is None or time.monotonic() < end):
                notifier.watchdog()
            return int(ExitCode.OK)
        from controller.controller import LineController

        controller = LineController(cfg)
        controller.start()
        try:
            controller.run(duration=args.duration, until_done=args.until_done, stop_event=stop_event)
        except KeyboardInterrupt:
            pass
        finally:
            controller.stop()
        print(controller.snapshot().model_dump_json(indent=2))
        return int(ExitCode.OK)
    finally:
        if bridge is not None:
            bridge.stop()
