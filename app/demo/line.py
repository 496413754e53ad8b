"""The live part of the demo: a broker, a station on the line video, and the line controller.

The station runs as its own process (``inspector run``), exactly as on a device, on the rendered video
paced at the camera's frame rate, in triggered mode. The line controller runs in this process and plays the
part sensor: it triggers each part when the part dwells under the camera. Its clock starts from the
station's ``started`` event, so triggers land in the middle of each part's dwell.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import yaml

from app.demo.video import LineVideo
from inspector.localbroker import LocalBroker
from inspector.mqtt import BrokerClient, MqttConfig
from inspector.protocol.enums import EventType
from inspector.protocol.topics import StationTopics

log = logging.getLogger(__name__)

LINE, STATION = "demo", "cam1"


@dataclass
class LineRecord:
    """What the line did: the controller's decisions and the station's results, events and last stats."""

    decisions: List[dict] = field(default_factory=list)
    results: Dict[str, dict] = field(default_factory=dict)  # by part id
    events: List[dict] = field(default_factory=list)
    stats: Optional[dict] = None
    started_at: Optional[float] = None
    station_exit: Optional[int] = None
    duration_s: float = 0.0


class Observer:
    """An MQTT subscriber to the station's result, event and stats topics."""

    def __init__(self, broker: LocalBroker, topics: StationTopics, record: LineRecord):
        self.record = record
        self.topics = topics
        self.started = threading.Event()
        self._lock = threading.Lock()
        cfg = MqttConfig(host=broker.host, port=broker.port, protocol=broker.protocol)
        self.client = BrokerClient(cfg, "demo-observer")
        self.client.client.on_message = self._on_message
        self.client.on_connect(
            lambda session_present: self.client.client.subscribe(
                [(topics.result, 1), (topics.event, 1), (topics.stats, 0)]
            )
        )
        if not self.client.start(timeout=10.0):
            raise RuntimeError(f"demo observer: no answer from the broker at {broker.host}:{broker.port}")

    def _on_message(self, client, userdata, msg) -> None:
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        with self._lock:
            if msg.topic == self.topics.result:
                self.record.results[data.get("part_id") or data["id"]] = data
            elif msg.topic == self.topics.event:
                self.record.events.append(data)
                if data.get("type") == EventType.STARTED:
                    self.record.started_at = time.monotonic()
                    self.started.set()
            else:
                self.record.stats = data

    def close(self) -> None:
        self.client.stop()


def write_station_config(path: Path, bundle: Path, video: LineVideo, broker: LocalBroker, workdir: Path) -> Path:
    config = {
        "line": LINE,
        "station": STATION,
        "bundle": str(bundle),
        "models_dir": str(bundle.parent),
        "source": {"type": "video", "path": video.path, "fps": video.fps, "stall_timeout_s": 5},
        "mode": {"type": "triggered", "trigger_timeout_s": 2.0},
        "mqtt": {"host": broker.host, "port": broker.port, "protocol": broker.protocol, "stats_interval_s": 1.0},
        "outbox": {"path": str(workdir / "outbox.sqlite"), "accept_mqtt311_acks": broker.protocol == "3.1.1"},
        "archive": {"path": str(workdir / "archive"), "pass_every": 1},  # every part: the report shows escapes
        "health": {"every_n_frames": 25},
        "log": {"format": "text"},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_line(
    bundle: Path, video: LineVideo, workdir: Path, on_decision: Callable[[dict], None] = lambda d: None
) -> LineRecord:
    """Run broker, station and controller over the whole video; return what happened. Leaves no process."""
    from controller.config import LineConfig
    from controller.controller import LineController

    workdir.mkdir(parents=True, exist_ok=True)
    record = LineRecord()
    broker = LocalBroker(workdir / "broker").start()
    station = observer = controller = None
    try:
        topics = StationTopics("inspector", LINE, STATION)
        observer = Observer(broker, topics, record)
        config = write_station_config(workdir / "station.yaml", bundle, video, broker, workdir)
        with open(workdir / "station.log", "wb") as station_log:
            station = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "run", "--config", str(config)],
                stdout=station_log,
                stderr=subprocess.STDOUT,
            )
        if not observer.started.wait(60):
            raise RuntimeError(f"the station did not start; see {workdir / 'station.log'}")
        slot_s = video.slots[1].start_s - video.slots[0].start_s if len(video.slots) > 1 else 1.0
        line_cfg = LineConfig.model_validate(
            {
                "line": LINE,
                "stations": [STATION],
                "mqtt": {"host": broker.host, "port": broker.port, "protocol": broker.protocol},
                "result_deadline_s": 3.0,
                "state_interval_s": 1.0,
                "trigger": {"rate_hz": 1.0 / slot_s, "count": len(video.slots)},
            }
        )
        controller = LineController(line_cfg)
        controller.add_listener(
            lambda d: (record.decisions.append(d.model_dump(mode="json")), on_decision(d.model_dump(mode="json")))
        )
        controller.start()
        # The first trigger goes out on the first tick: wait until part 1 dwells under the camera.
        delay = record.started_at + video.slots[0].trigger_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        began = time.monotonic()
        controller.run(duration=video.duration_s + 30, until_done=True)
        record.duration_s = time.monotonic() - began
        time.sleep(1.5)  # one more stats period
    finally:
        if controller is not None:
            controller.stop()
        if station is not None:
            if station.poll() is None:
                station.send_signal(signal.SIGTERM)
            try:
                record.station_exit = station.wait(30)
            except subprocess.TimeoutExpired:
                station.kill()
                record.station_exit = station.wait()
        if observer is not None:
            observer.close()
        broker.stop()
    return record
