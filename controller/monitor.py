"""Live view of every station and controller on a broker, as plain text for a technician's terminal.

:class:`LineMonitor` folds the messages of ``<prefix>/+/+/{status,stats,result,event,state}`` into one row
per station (status, camera, fps, results per minute seen live, yield, counts, outbox, then an indented
line with model, latency and last event) and one per line controller, grouped by line. :func:`render`
draws it in 80 columns; the CLI repaints it with two ANSI codes (home, clear), so no curses is needed and
it works over any SSH.

Example:
    >>> mon = LineMonitor()
    >>> mon.handle("inspector/line1/cam1/status", b"online", now=0.0)
    >>> "cam1" in render(mon, now=1.0, color=False)
    True
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional, Tuple

from inspector.protocol.enums import EventType, LineState, Presence, Verdict
from inspector.protocol.payloads import ControllerState, Event, Result, Stats
from inspector.protocol.topics import StationTopics

LEAVES = ("status", "stats", "result", "event", "state")
CLEAR = "\x1b[H\x1b[2J"
_RED, _GREEN, _YELLOW, _RESET = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[0m"
WIDTH = 80  # a technician's terminal; every line of the screen fits


@dataclass
class NodeView:
    """What the monitor knows about one station (or controller) from its topics."""

    line: str
    name: str
    status: str = "?"
    stats: Optional[Stats] = None
    state: Optional[ControllerState] = None
    verdicts: Counter = field(default_factory=Counter)
    recent: Deque[Tuple[float, Verdict]] = field(default_factory=deque)  # (arrival time, verdict)
    last_event: Optional[Event] = None
    last_event_at: Optional[float] = None
    last_seen: Optional[float] = None
    camera_check: bool = False  # a camera_check event (focus, exposure) not yet cleared by camera_ok
    sender_mismatches: int = 0  # results on this node's topic that name another station or line

    @property
    def is_controller(self) -> bool:
        return self.state is not None


class LineMonitor:
    """Thread-safe enough for one MQTT thread writing and one render loop reading (rows are replaced whole)."""

    def __init__(self, window_s: float = 60.0, started: Optional[float] = None):
        self.window_s = window_s
        self.started = started  # when listening began (default: the first message): rates count from then
        self.nodes: Dict[Tuple[str, str], NodeView] = {}
        self.bad_messages = 0

    def subscriptions(self, prefix: str = "inspector", line: str = "+") -> List[Tuple[str, int]]:
        return [(f"{prefix}/{line}/+/{leaf}", 1) for leaf in LEAVES]

    def handle(self, topic: str, payload: bytes, now: Optional[float] = None) -> None:
        parsed = StationTopics.parse(topic)
        if parsed is None or parsed[3] not in LEAVES:
            return
        now = time.monotonic() if now is None else now
        if self.started is None:
            self.started = now
        _, line, name, leaf = parsed
        node = self.nodes.setdefault((line, name), NodeView(line, name))
        node.last_seen = now
        try:
            if leaf == "status":
                node.status = payload.decode("utf-8", "replace").strip() or "?"
            elif leaf == "stats":
                node.stats = Stats.model_validate_json(payload)
            elif leaf == "state":
                node.state = ControllerState.model_validate_json(payload)
            elif leaf == "result":
                result = Result.model_validate_json(payload)
                if result.names_other_sender(line, name):  # the topic says who sent it: not this node's verdict
                    node.sender_mismatches += 1
                else:
                    node.verdicts[result.verdict] += 1
                    node.recent.append((now, result.verdict))
            elif leaf == "event":
                node.last_event, node.last_event_at = Event.model_validate_json(payload), now
                if node.last_event.type in (EventType.CAMERA_CHECK, EventType.CAMERA_OK):
                    node.camera_check = node.last_event.type == EventType.CAMERA_CHECK
        except ValueError:
            self.bad_messages += 1
        self._trim(node, now)

    def _trim(self, node: NodeView, now: float) -> None:
        while node.recent and node.recent[0][0] < now - self.window_s:
            node.recent.popleft()

    def rate_per_min(self, node: NodeView, now: float) -> float:
        """Results per minute over the window, or over the time listened when that is shorter (``--once``)."""
        self._trim(node, now)
        listened = now - (now if self.started is None else self.started)
        return len(node.recent) * 60.0 / max(1.0, min(self.window_s, listened))


def _fmt(value, spec: str = "", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def _count(value: Optional[int]) -> str:
    """A count in at most 5 characters (1234567 -> 1.2M), so the screen keeps its 80 columns all shift long."""
    if value is None:
        return "-"
    if value < 100_000:
        return str(value)
    return f"{value / 1000:.0f}k" if value < 999_500 else f"{value / 1e6:.1f}M"


def _age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.0f}h"


def _table(header: List[str], rows: List[Row], color: bool, indent: str = "  ") -> List[str]:
    """Columns left-aligned (text) or right-aligned (numbers); a row's detail line goes under it, indented."""
    widths = [max(len(h), *(len(r.cells[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    numeric = [i > 0 and all(_is_number(r.cells[i]) for r in rows) for i in range(len(header))]

    def line(cells: List[str]) -> str:
        return indent + "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric))

    lines = [line(header).rstrip()]
    for row in rows:
        text = line(row.cells).rstrip()
        lines.append(f"{row.color}{text}{_RESET}" if color and row.color else text)
        lines += _pack(row.details, indent + " " * (widths[0] + 2))
    return lines


def _is_number(cell: str) -> bool:
    return cell == "-" or cell.rstrip("kM").replace(".", "", 1).isdigit()


def _pack(items: List[str], indent: str) -> List[str]:
    """Detail items joined with ', ' into lines of at most WIDTH columns (an item longer than that is cut)."""
    lines: List[str] = []
    for item in items:
        if lines and len(lines[-1]) + 2 + len(item) <= WIDTH:
            lines[-1] += ", " + item
        else:
            lines.append((indent + item)[:WIDTH])
    return lines


@dataclass
class Row:
    cells: List[str]
    color: str
    details: List[str]


def _station_row(monitor: LineMonitor, n: NodeView, now: float) -> Row:
    s = n.stats
    offline = n.status == Presence.OFFLINE
    camera = s.camera_state.value if s else "-"
    if n.camera_check and s is not None and s.camera_state.inspecting:
        camera = "check"  # inspecting, but focus or exposure is out of its commissioning tolerance
    cells = [
        n.name,
        n.status,
        "-" if offline else camera,
        "-" if offline else _fmt(s and s.fps, ".1f"),  # a stopped station's last figures are not its rate
        "-" if offline else f"{monitor.rate_per_min(n, now):.0f}",
        _fmt(s and s.yield_pct, ".1f"),
        _count(s and s.passed),
        _count(s and s.failed),
        _count(s and s.review),
        _count(s and s.outbox_depth),
    ]
    details = []
    if s and s.model_version:
        details.append(f"model {s.model_version}")
    if s and s.inference_ms_p50 is not None:
        details.append(f"p50/p95 {_fmt(s.inference_ms_p50, '.1f')}/{_fmt(s.inference_ms_p95, '.1f')} ms")
    if n.last_event and n.last_event_at is not None:
        details.append(f"{n.last_event.type.value} {_age(now - n.last_event_at)} ago")
    if s and s.paused:
        details.append("paused")
    bad = offline or (s is not None and not s.camera_state.inspecting)
    warn = (s is not None and s.paused) or n.status != Presence.ONLINE or camera == "check"
    return Row(cells, _RED if bad else (_YELLOW if warn else _GREEN), details)


def _controller_row(n: NodeView) -> Row:
    st = n.state
    assert st is not None
    cells = [
        n.name,
        n.status,
        st.state.value,
        _count(st.parts),
        _count(st.accepted),
        _count(st.rejected),
        _fmt(st.yield_pct, ".1f"),
        _count(st.pending),
        _count(st.late),
    ]
    details = [f"stopped: {st.stop_reason}"] if st.stop_reason else []
    if st.reject_reasons:
        details.append("rejects " + ",".join(f"{k}:{v}" for k, v in sorted(st.reject_reasons.items())))
    if st.duplicates:
        details.append(f"{st.duplicates} duplicate(s)")
    offline = [name for name, status in st.stations.items() if status != Presence.ONLINE]
    if offline:
        details.append("not online: " + ",".join(offline))
    bad = st.state == LineState.STOPPED or n.status == Presence.OFFLINE
    return Row(cells, _RED if bad else _GREEN, details)


STATION_HEADER = ["STATION", "STATUS", "CAMERA", "FPS", "/MIN", "YIELD%", "PASS", "FAIL", "REVIEW", "OUTBOX"]
CONTROLLER_HEADER = ["CONTROLLER", "STATUS", "STATE", "PARTS", "ACCEPT", "REJECT", "YIELD%", "PENDING", "LATE"]


def render(monitor: LineMonitor, now: Optional[float] = None, color: bool = True, title: str = "") -> str:
    """The whole screen as text, one block per line: its stations, then its controller(s)."""
    now = time.monotonic() if now is None else now
    nodes = sorted(monitor.nodes.values(), key=lambda n: (n.line, n.name))
    out = [title or f"inspector monitor  {time.strftime('%Y-%m-%d %H:%M:%S')}"]
    if not any(not n.is_controller for n in nodes):
        out += ["", "(no station seen yet)"]
    for line in sorted({n.line for n in nodes}):
        stations = [_station_row(monitor, n, now) for n in nodes if n.line == line and not n.is_controller]
        controllers = [_controller_row(n) for n in nodes if n.line == line and n.is_controller]
        out += ["", f"line {line}"]
        if stations:
            out += _table(STATION_HEADER, stations, color)
        if controllers:
            out += _table(CONTROLLER_HEADER, controllers, color)
    forged = [n for n in nodes if n.sender_mismatches]
    if forged:
        out += [""] + [
            f"{n.line}/{n.name}: {n.sender_mismatches} result(s) naming another station or line (not counted)"
            for n in forged
        ]
    if monitor.bad_messages:
        out += ["", f"{monitor.bad_messages} message(s) could not be parsed"]
    return "\n".join(out) + "\n"
