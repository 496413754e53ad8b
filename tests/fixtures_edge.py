"""Frame sources the edge tests can switch on and off: image folders, video files, a live MJPEG camera.

The MJPEG server is a real HTTP ``multipart/x-mixed-replace`` stream (what IP cameras serve), read by
OpenCV's FFmpeg backend exactly like a camera on the network; stopping it is a camera going away.
"""

from __future__ import annotations

import http.server
import shutil
import socket
import socketserver
import threading
import time
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np
import pytest


def level_image(level: int, size=(48, 64)) -> np.ndarray:
    """A BGR frame whose brightness encodes a number (0..250), readable back after JPEG/MJPG coding."""
    image = np.full((size[0], size[1], 3), level, np.uint8)
    image[:, : size[1] // 4] = 255 - level  # some structure so codecs do not degenerate
    return image


def read_level(image: np.ndarray) -> int:
    return int(round(float(image[:, image.shape[1] // 2 :].mean())))


def write_folder(folder: Path, count: int, start: int = 0, prefix: str = "img") -> List[Path]:
    """PNG files ``<prefix>_0000.png`` ... with brightness 10, 20, ... (sorted order = write order)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = folder / f"{prefix}_{i:04d}.png"
        cv2.imwrite(str(path), level_image(10 + 10 * (i % 24)))
        paths.append(path)
    return paths


def drop_files(paths: List[Path], folder: Path, names: Optional[List[str]] = None) -> List[Path]:
    """Copy ``paths`` into a watched folder (under ``names`` if given), each appearing complete: written under a
    hidden temporary name, then renamed, as a camera's FTP upload or a careful copy does."""
    folder.mkdir(parents=True, exist_ok=True)
    targets = []
    for i, src in enumerate(paths):
        target = folder / (names[i] if names else src.name)
        tmp = folder / f".{target.name}.tmp"
        shutil.copy(src, tmp)
        tmp.rename(target)
        targets.append(target)
    return targets


def watched_folder_source(folder: Path) -> dict:
    """A ``folder`` source section that watches ``folder`` (created here) for new files, polling fast."""
    folder.mkdir(parents=True, exist_ok=True)
    return {"type": "folder", "path": str(folder), "watch": True, "poll_s": 0.05}


def write_video(path: Path, count: int, fps: float = 10.0) -> Path:
    """An MJPG AVI whose frame i has brightness 10 + 10 * i."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened(), "this OpenCV cannot write MJPG AVI files"
    for i in range(count):
        writer.write(level_image(10 + 10 * (i % 24)))
    writer.release()
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MjpegServer:
    """An HTTP MJPEG camera on loopback; ``stop()``/``start()`` keep the port (camera lost / restored)."""

    def __init__(self, fps: float = 20.0):
        self.port = _free_port()
        self.fps = fps
        self.frames_sent = 0
        self._server: Optional[socketserver.ThreadingTCPServer] = None
        self._running = threading.Event()
        self.stalled = False  # connection stays open but no frame is sent (a hung camera)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while server._running.is_set():
                        if server.stalled:
                            time.sleep(0.02)
                            continue
                        ok, data = cv2.imencode(".jpg", level_image(10 + 10 * (server.frames_sent % 24)))
                        payload = data.tobytes()
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(payload)
                            + payload
                            + b"\r\n"
                        )
                        server.frames_sent += 1
                        time.sleep(1.0 / server.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        return Handler

    def start(self) -> None:
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._running.set()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Close the connections and stop listening: the camera is gone."""
        self._running.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def mjpeg_server():
    server = MjpegServer()
    server.start()
    yield server
    server.stop()


def station_config(
    broker, workdir: Path, bundle: Path, source: dict, station: Optional[str] = None, overrides: Optional[dict] = None
):
    """A StationConfig for tests: fast reconnects and stats, everything under ``workdir``."""
    import uuid

    from edge.config import StationConfig
    from inspector.config import set_dotted

    data = {
        "line": "edgetest",
        "station": station or f"st-{uuid.uuid4().hex[:6]}",
        "bundle": str(bundle),
        "source": source,
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "protocol": broker.protocol,
            "keepalive_s": 5,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            "stats_interval_s": 0.5,
        },
        "outbox": {
            "path": str(workdir / "outbox.sqlite"),
            "drain_timeout_s": 10,
            "accept_mqtt311_acks": broker.protocol == "3.1.1",
        },  # amqtt speaks 3.1.1 only
        "archive": {"path": str(workdir / "archive"), "snapshot_dir": str(workdir / "snapshots")},
    }
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    return StationConfig.model_validate(data)


class StationThread:
    """A real :class:`edge.runtime.Station` running in a thread of the test process."""

    def __init__(self, cfg):
        from edge.runtime import Station

        self.cfg = cfg
        self.station = Station(cfg)
        self.exit_code: Optional[int] = None
        self._thread = threading.Thread(target=self._run, name=f"station-{cfg.station}", daemon=True)

    def _run(self) -> None:
        self.exit_code = self.station.run()

    def start(self) -> StationThread:
        self._thread.start()
        return self

    def wait(self, timeout: float = 60.0) -> int:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "station did not stop"
        return self.exit_code

    def stop(self, timeout: float = 60.0) -> int:
        self.station.request_stop("test finished")
        return self.wait(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


@pytest.fixture(scope="session")
def part_images(synth_root, tmp_path_factory) -> list:
    """Ten real synthetic parts (two per class) under sorted names."""
    folder = tmp_path_factory.mktemp("parts")
    for cls_dir in sorted(p for p in synth_root.iterdir() if p.is_dir()):
        for src in sorted(cls_dir.glob("*.png"))[:2]:
            shutil.copy(src, folder / f"{len(list(folder.iterdir())):03d}_{cls_dir.name}.png")
    return sorted(folder.iterdir())


def send_args(broker, station: str, *command: str, timeout: float = 20.0):
    """Parsed ``inspector send`` arguments that reach ``station`` of the ``edgetest`` line through ``broker``."""
    import argparse

    from app.commands import send

    parser = argparse.ArgumentParser()
    send.add_arguments(parser)
    return parser.parse_args(
        ["--broker", f"{broker.host}:{broker.port}", "--protocol", broker.protocol, "--line", "edgetest"]
        + ["--station", station, "--timeout", str(timeout), *command]
    )
