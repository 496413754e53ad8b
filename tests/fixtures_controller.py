"""Helpers for the controller tests: station-like Result payloads and a controller running in a thread.

The broker itself comes from tests/fixtures_mqtt.py (a real Mosquitto, or amqtt where it is missing).
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from typing import Optional

import pytest


def result_payload(
    line: str, station: str, part_id: Optional[str], verdict: str, rid: Optional[str] = None, seq: int = 1
) -> str:
    """A Result exactly as a station publishes it (inspector.protocol.payloads.Result, by alias)."""
    from inspector.protocol.payloads import Result

    return Result.model_validate(
        {
            "id": rid or uuid.uuid4().hex,
            "seq": seq,
            "line": line,
            "station": station,
            "part_id": part_id,
            "verdict": verdict,
            "defect_score": 0.93 if verdict == "fail" else 0.04,
            "threshold": 0.5,
            "top_class": "crack" if verdict == "fail" else "good",
            "top_score": 0.93,
            "scores": {"good": 0.07, "crack": 0.93} if verdict == "fail" else {"good": 0.96, "crack": 0.04},
            "model": {"name": "tile", "version": "3", "sha256": "a" * 12},
            "captured_at": "2026-01-01T00:00:00Z",
            "capture_ts": time.time(),
            "inference_ms": 4.2,
        }
    ).to_json()


def stats_payload(**fields) -> str:
    from inspector.protocol.payloads import Stats

    base = {
        "ts": time.time(),
        "uptime_s": 12.0,
        "fps": 9.5,
        "frames_captured": 120,
        "frames_inspected": 100,
        "frames_dropped": 20,
        "inference_ms_p50": 4.1,
        "inference_ms_p95": 6.3,
        "passed": 90,
        "failed": 8,
        "review": 2,
        "yield_pct": 90.0,
        "outbox_depth": 0,
        "camera_state": "running",
        "model_version": "3",
    }
    base.update(fields)
    return Stats.model_validate(base).model_dump_json()


def line_config(broker, line: Optional[str] = None, **fields):
    """A LineConfig pointed at ``broker``; every test uses its own line name on the shared broker."""
    from controller.config import LineConfig

    data = {
        "line": line or f"line-{uuid.uuid4().hex[:8]}",
        "mqtt": {"host": broker.host, "port": broker.port, "protocol": broker.protocol},
    }
    data.update(fields)
    return LineConfig.model_validate(data)


@contextmanager
def running_controller(cfg, **kwargs):
    """A started LineController whose loop runs in a thread; stopped (status offline) on exit."""
    from controller.controller import LineController

    controller = LineController(cfg, **kwargs)
    controller.start()
    stop = threading.Event()
    thread = threading.Thread(target=controller.run, kwargs={"stop_event": stop}, daemon=True)
    thread.start()
    try:
        yield controller
    finally:
        stop.set()
        thread.join(10)
        controller.stop()


def require_mosquitto(broker, why: str) -> None:
    """Skip on the amqtt fallback broker for behaviour it does not provide (see the reason given)."""
    if broker.kind != "mosquitto":
        pytest.skip(f"amqtt (the fallback broker) {why}")


def decisions(recorder) -> list:
    return [m.json() for m in recorder.on("decision")]


AMQTT_UNRELIABLE = (
    "is not reliable enough here (observed: reordered deliveries, messages queued for an offline "
    "session never delivered, messages of other tests' topics); these tests need Mosquitto"
)


@pytest.fixture
def recorder_factory(shared_broker):
    """Recording subscribers on the shared broker, closed after the test."""
    require_mosquitto(shared_broker, AMQTT_UNRELIABLE)
    made = []

    def make(topics, persistent=False):
        rec = shared_broker.subscriber(topics, persistent=persistent)
        made.append(rec)
        return rec

    yield make
    for rec in made:
        rec.close()
