"""Send one command to a station and wait for its answer: the last step of the retraining loop is ``reload``.

The command is built from the typed contract (inspector.protocol.commands), published on the topic of its
consequence (``cmd``, or ``engineering`` for reload and set_threshold: the broker ACL lets only the
engineer account write there), and carries a fresh ``request_id``. The answer is the station's event with
that id, read from that station's own event topic (a trigger's answer is the result of its part). Exit 0
when the station applied the command, 1 when it refused or failed it, 3 when no answer came in time.

Examples:
  inspector send --broker localhost:1883 --line demo --station cam1 reload tiles-v7.inspector
  inspector send --station cam1 set_threshold 0.42 --review 0.35 0.5
  inspector send --station cam1 trigger --part-id A-1042
  inspector send --station cam1 pause
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Optional, Set

from pydantic import TypeAdapter, ValidationError

from inspector.protocol.commands import Command

EXIT_APPLIED, EXIT_REFUSED, EXIT_NO_ANSWER = 0, 1, 3
_COMMAND: TypeAdapter = TypeAdapter(Command)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from inspector.mqtt import add_broker_arguments

    add_broker_arguments(parser)
    parser.add_argument("--line", default="line1", help="line name (topic level, default line1)")
    parser.add_argument("--station", required=True, help="station name (topic level)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer (default 30)")
    parser.add_argument("--json", action="store_true", help="print only the answer as JSON")
    commands = parser.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    reload = commands.add_parser("reload", help="load another bundle from the station's models directory")
    reload.add_argument("bundle", help="bundle path inside the station's models directory")
    reload.add_argument(
        "--sha256",
        metavar="HEX",
        help="expected SHA-256 of the bundle file (default: that of BUNDLE when it is a file here too)",
    )
    threshold = commands.add_parser("set_threshold", help="change the fail threshold (and review band)")
    threshold.add_argument("threshold", type=float)
    threshold.add_argument("--review", type=float, nargs=2, metavar=("LOW", "HIGH"), help="review band")
    threshold.add_argument("--override", action="store_true", help="allow values outside the calibrated range")
    trigger = commands.add_parser("trigger", help="inspect the next frame (triggered mode) and print its result")
    trigger.add_argument("--part-id", help="part id reported in the result (default: a fresh one)")
    for name, text in (("pause", "stop inspecting"), ("resume", "inspect again"), ("snapshot", "save a frame")):
        commands.add_parser(name, help=text)


def build_command(args: argparse.Namespace):
    """The typed command for the arguments (validated like the station validates it)."""
    request_id = f"send-{uuid.uuid4().hex[:12]}"
    data: dict = {"cmd": args.cmd, "request_id": request_id}
    if args.cmd == "reload":
        data["bundle"] = args.bundle
        digest = args.sha256
        if digest is None and Path(args.bundle).is_file():
            digest = hashlib.sha256(Path(args.bundle).read_bytes()).hexdigest()
        if digest is not None:
            data["sha256"] = digest
    elif args.cmd == "set_threshold":
        data["threshold"] = args.threshold
        if args.review:
            data["review_low"], data["review_high"] = args.review
        data["override"] = args.override
    elif args.cmd == "trigger":
        data["part_id"] = args.part_id or request_id
    try:
        return _COMMAND.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or args.cmd
        raise ValueError(f"{args.cmd}: {where}: {first['msg']}") from None


class AnswerWaiter:
    """Collects the station's answer to one request: its events with our request_id, or a trigger's result."""

    def __init__(self, command, final: Set[str]):
        self.command = command
        self.final = final
        self.answer: Optional[dict] = None
        self.done = threading.Event()

    def on_event(self, payload: bytes) -> None:
        try:
            event = json.loads(payload)
            if event.get("details", {}).get("request_id") != self.command.request_id:
                return
        except (ValueError, AttributeError):
            return
        if event.get("type") in self.final or event.get("type") in FAILURES:  # not "loading ...": still waiting
            self.answer = event
            self.done.set()

    def on_result(self, payload: bytes) -> None:
        if self.command.cmd != "trigger":
            return
        try:
            result = json.loads(payload)
        except ValueError:
            return
        if isinstance(result, dict) and result.get("part_id") == getattr(self.command, "part_id", None):
            self.answer = {"type": "result", **result}
            self.done.set()


FAILURES = {"command_rejected", "model_reload_failed"}
FINAL = {
    "reload": {"model_reloaded"},
    "set_threshold": {"threshold_changed"},
    "pause": {"command_accepted"},
    "resume": {"command_accepted"},
    "snapshot": {"snapshot"},
    "trigger": set(),  # answered by the part's result
}


def run(args: argparse.Namespace) -> int:
    from inspector.mqtt import BrokerClient, mqtt_config_from_arguments
    from inspector.protocol.commands import command_topic
    from inspector.protocol.topics import StationTopics

    command = build_command(args)
    cfg = mqtt_config_from_arguments(args)
    topics = StationTopics(cfg.prefix, args.line, args.station)
    waiter = AnswerWaiter(command, FINAL[command.cmd])
    subscribed = threading.Event()
    client = BrokerClient(cfg, f"inspector-send-{os.getpid()}-{uuid.uuid4().hex[:6]}")

    def on_connect(_: bool) -> None:
        client.client.subscribe([(topics.event, 1), (topics.result, 1)])

    def on_message(_c, _u, msg) -> None:
        if msg.topic == topics.event:
            waiter.on_event(msg.payload)
        elif msg.topic == topics.result:
            waiter.on_result(msg.payload)

    client.on_connect(on_connect)
    client.client.on_message = on_message
    client.client.on_subscribe = lambda *a: subscribed.set()
    if not client.start(timeout=10.0):
        client.stop()
        print(f"cannot connect to the broker at {cfg.host}:{cfg.port}", file=sys.stderr)
        return EXIT_NO_ANSWER
    try:
        subscribed.wait(5.0)  # subscribe before sending, so a fast answer is not missed
        client.publish(command_topic(topics, command), command.model_dump_json(exclude_none=True), qos=1)
        if not args.json:
            print(f"sent {command.cmd} to {topics.base} (request {command.request_id}); waiting for the answer")
        started = time.monotonic()
        answered = waiter.done.wait(args.timeout)
    finally:
        client.stop()
    if not answered:
        print(
            f"no answer from {topics.base} within {args.timeout:g} s: is the station running and connected to "
            f"{cfg.host}:{cfg.port}, and may this account write {command_topic(topics, command)}?",
            file=sys.stderr,
        )
        return EXIT_NO_ANSWER
    answer = waiter.answer or {}
    refused = answer.get("type") in FAILURES
    if args.json:
        print(json.dumps(answer))
    else:
        took = time.monotonic() - started
        if answer.get("type") == "result":
            text = f"{answer.get('verdict')} (defect score {answer.get('defect_score')}, top {answer.get('top_class')})"
        else:
            text = f"{answer.get('type')}: {answer.get('message')}"
        print(f"{'refused' if refused else 'done'} in {took:.1f} s: {text}")
    return EXIT_REFUSED if refused else EXIT_APPLIED
