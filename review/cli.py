"""Review archived frames in a browser and label them into the dataset folders.

Shows each failed or review frame a station archived (the frame, its region of interest, the heatmap
overlay when the archive has one, verdict, score, station and time), filters them, and labels them with
one key per class: a label copies the image into DATA/<class>/ with a provenance sidecar, never replacing
a file; `u` undoes the last label. The header counts what each class gained since the last training.

Binds to 127.0.0.1; on any other address it needs a token (--token or INSPECTOR_REVIEW_TOKEN), which the
browser gives once as /?token=TOKEN. Needs the `review` extra: pip install 'defect-inspector[review]'.

Example:
  inspector review data --archive /var/lib/inspector/archive --run runs/r1 --bundle models/r1.inspector
  inspector review data --archive cam1/archive --archive cam2/archive --host 0.0.0.0 --port 8765 --token "$TOKEN"
"""

from __future__ import annotations

import argparse
import errno
import socket
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from review.config import ReviewConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="labeled dataset folder DATA/<class>/* (labels are copied here)")
    parser.add_argument(
        "--archive",
        dest="archives",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="a station's archive folder (repeatable for several stations)",
    )
    parser.add_argument("--good-class", default="good", help="the pass class's folder name (default: good)")
    parser.add_argument("--run", type=Path, metavar="RUN_DIR", help="last training run: count what is new since")
    parser.add_argument("--bundle", type=Path, help="the stations' bundle: its region of interest gives the ROI crop")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0: any free port)")
    parser.add_argument("--token", help="access token; default $INSPECTOR_REVIEW_TOKEN; required off loopback")
    parser.add_argument("--user", help="who labels, written into each provenance sidecar (default: login name)")


def config_from_args(args: argparse.Namespace) -> ReviewConfig:
    from inspector.config import validate
    from review.config import ReviewConfig

    values = {
        "data": args.data,
        "archives": args.archives,
        "good_class": args.good_class,
        "run": args.run,
        "bundle": args.bundle,
        "host": args.host,
        "port": args.port,
        "token": args.token or ReviewConfig.token_from_env(),
    }
    if args.user:
        values["user"] = args.user
    return validate(ReviewConfig, values, "inspector review")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, bound here rather than inside uvicorn, which reports a port in use
    only after the address was printed, in its own log format, by exiting from inside its event loop."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise RuntimeError(
            f"cannot listen on {host}: {exc.strerror}; give an address of this machine with --host"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart is not kept waiting
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise RuntimeError(f"port {port} on {host} is in use; choose another with --port") from None
        raise RuntimeError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    return sock


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            f"inspector review needs the review extra ({exc.name} is missing): pip install 'defect-inspector[review]'"
        ) from None
    from review.app import create_app

    cfg = config_from_args(args)
    app = create_app(cfg)
    with listen(cfg.host, cfg.port) as sock:
        port = sock.getsockname()[1]  # the one the system chose for --port 0
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        print(f"inspector review: http://{host}:{port}/ (labels go to {cfg.data}; Ctrl+C stops)", flush=True)
        try:
            uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
        except KeyboardInterrupt:  # Ctrl+C, once the server stopped: a normal end, as uvicorn.run has it
            pass
    return 0
