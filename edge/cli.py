"""Run an inspection station: camera -> INT8 model -> pass/fail/review -> MQTT, until stopped.

Reads a station config (deploy/station.example.yaml documents every key); any key can be overridden with
--set key.path=value, and the common ones have their own flags. Results go through a durable on-disk
outbox, so nothing is lost while the broker is away or after a power cut. Topics, payloads and commands:
docs/edge.md.

Examples:
  inspector run --config station.yaml
  inspector run --config station.yaml --set mqtt.port=1884 --set mode.type=triggered
  inspector run --bundle model.inspector --source images/ --broker localhost:1883 --station cam1
  inspector run --bundle model.inspector --source 0 --print-config > station.yaml

Exit codes:
  0 stopped by SIGTERM/SIGINT, or a replay source ended with every result delivered
  1 unexpected internal error            2 bad command line or configuration
  3 the model bundle cannot be loaded, or no TFLite runtime (the message says what to install)
  4 the frame source cannot work / stayed lost too long
  5 the outbox database cannot be used   6 a replay ended with results still queued
  7 the MQTT network thread died (the station went offline; restart)
  8 the broker refused results (ACL); they stay in the outbox as rejected
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="YAML", help="station config file (station.yaml)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set mqtt.port=1884 (repeatable; wins over flags)",
    )
    parser.add_argument("--bundle", help="model bundle (.inspector); same as --set bundle=...")
    parser.add_argument(
        "--source",
        help="frame source: camera index (0), rtsp://|http:// URL, GStreamer "
        "pipeline (with '!'), image folder or video file",
    )
    parser.add_argument("--broker", metavar="HOST[:PORT]", help="MQTT broker")
    parser.add_argument("--line", help="line name (topic level)")
    parser.add_argument("--station", help="station name (topic level)")
    parser.add_argument("--mode", choices=["continuous", "triggered"], help="inspection mode")
    parser.add_argument(
        "--outbox", metavar="PATH", help="outbox SQLite file (default: outbox.sqlite in the config's state_dir)"
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved configuration as YAML and exit")


def _overrides(args: argparse.Namespace) -> dict:
    from edge.config import source_from_text
    from inspector.config import parse_override
    from inspector.mqtt import parse_broker

    out: dict = {}
    if args.bundle:
        out["bundle"] = args.bundle
    if args.source:
        out["source"] = source_from_text(args.source)
    if args.broker:
        host, port = parse_broker(args.broker)
        out["mqtt.host"] = host
        if port is not None:
            out["mqtt.port"] = port
    for key in ("line", "station"):
        if getattr(args, key):
            out[key] = getattr(args, key)
    if args.mode:
        out["mode.type"] = args.mode
    if args.outbox:  # a path typed on the command line means the current folder, not state_dir
        out["outbox.path"] = str(Path(args.outbox).absolute())
    for text in args.set:
        key, value = parse_override(text)
        out[key] = value
    return out


def runtime_advice(machine: str, python: tuple) -> str:
    """What to install when no TFLite runtime imports, for this board (docs/deployment.md, 1. Devices)."""
    if machine in ("armv7l", "armv6l"):
        if python >= (3, 11):
            return (
                "this is 32-bit ARM with Python {}.{}: no TFLite runtime is published for it (tflite-runtime "
                "stops at Python 3.10, ai-edge-litert is 64-bit only). Install the 64-bit Raspberry Pi OS "
                "(recommended), or run the station in a Python 3.9/3.10 venv with: pip install tflite-runtime "
                '"numpy<2" (docs/deployment.md, 32-bit Raspberry Pi OS)'.format(*python[:2])
            )
        return 'install one: pip install tflite-runtime "numpy<2" (32-bit ARM; docs/deployment.md)'
    return "install one: pip install ai-edge-litert (or: pip install .[edge] in the project folder)"


def _check_runtime(backend: str) -> str | None:
    """None when a TFLite runtime imports, else the plain message for the operator."""
    import platform
    import sys

    from inspector.inference import BackendError, load_backend

    try:
        load_backend(backend)
    except BackendError as exc:
        found = str(exc).split(". Install one:")[0]
        return f"{found}.\n{runtime_advice(platform.machine(), tuple(sys.version_info[:2]))}"
    return None


def run(args: argparse.Namespace) -> int:
    import signal
    import sys

    import yaml

    from edge import logs
    from edge.config import load_station_config
    from edge.runtime import Station
    from inspector.config import ConfigError
    from inspector.exitcodes import ExitCode

    try:
        cfg = load_station_config(args.config, _overrides(args))
    except ConfigError as exc:
        print(f"inspector run: configuration error:\n{exc}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    if args.print_config:
        print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
        return int(ExitCode.OK)
    problem = _check_runtime(cfg.inference.backend)
    if problem is not None:  # before logging is set up: plain text, not a JSON log line
        print(f"inspector run: cannot run the model: {problem}", file=sys.stderr)
        return int(ExitCode.MODEL)
    logs.configure("debug" if getattr(args, "verbose", False) else cfg.log.level, cfg.log.format)
    station = Station(cfg)
    station.echo = bool(getattr(args, "verbose", False)) or sys.stdout.isatty()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: station.request_stop(signal.Signals(signum).name))
    code = station.run()
    print(station.stats.summary(), flush=True)
    return code
