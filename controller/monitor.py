"""Live view of every station and controller on a broker, as plain text for a technician's terminal.

:class:`LineMonitor` folds the messages of ``<prefix>/+/+/{status,stats,result,event,state}`` into one row
per station (status, camera, fps, results per minute seen live, yield, latency, outbox, model, last event)
and one row per line controller (state, parts, rejects by reason, yield, pending). :func:`render` draws it;
the CLI repaints it with two ANSI codes (home, clear), so no curses is needed and it works over any SSH.

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

from inspector.protocol.enums import LineState, Presence, Verdict
from inspector.protocol.payloads import ControllerState, Event, Result, Stats
from inspector.protocol.topics import StationTopics

LEAVES = ("status", "stats", "result", "event", "state")
CLEAR = "\x1b[H\x1b[2J"
_RED, _GREEN, _YELLOW, _RESET = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[0m"


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
    sender_mismatches: int = 0  # results on this node's topic that name another station or line

    @property
    def is_controller(self) -> bool:
        return self.state is not None


class LineMonitor:
    """Thread-safe enough for one MQTT thread writing and one render loop reading (rows are replaced whole)."""

    def __init__(self, window_s: float = 60.0):
        self.window_s = window_s
        self.nodes: Dict[Tuple[str, str], NodeView] = {}
        self.bad_messages = 0

    def subscriptions(self, prefix: str = "inspector", line: str = "+") -> List[Tuple[str, int]]:
        return [(f"{prefix}/{line}/+/{leaf}", 1) for leaf in LEAVES]

    def handle(self, topic: str, payload: bytes, now: Optional[float] = None) -> None:
        parsed = StationTopics.parse(topic)
        if parsed is None or parsed[3] not in LEAVES:
            return
        now = time.monotonic() if now is None else now
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
        except ValueError:
            self.bad_messages += 1
        self._trim(node, now)

    def _trim(self, node: NodeView, now: float) -> None:
        while node.recent and node.recent[0][0] < now - self.window_s:
            node.recent.popleft()

    def rate_per_min(self, node: NodeView, now: float) -> float:
        self._trim(node, now)
        return len(node.recent) * 60.0 / self.window_s


def _fmt(value, spec: str = "", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def _age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.0f}h"


def _table(header: List[str], rows: List[List[str]], colors: List[str], color: bool) -> List[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    for row, row_color in zip(rows, colors):
        text = "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
        lines.append(f"{row_color}{text}{_RESET}" if color and row_color else text)
    return lines


def render(monitor: LineMonitor, now: Optional[float] = None, color: bool = True, title: str = "") -> str:
    """The whole screen as text: stations first, then controllers."""
    now = time.monotonic() if now is None else now
    nodes = sorted(monitor.nodes.values(), key=lambda n: (n.line, n.name))
    stations = [n for n in nodes if not n.is_controller]
    controllers = [n for n in nodes if n.is_controller]
    out = [title or f"inspector monitor  {time.strftime('%Y-%m-%d %H:%M:%S')}", ""]

    rows, colors = [], []
    for n in stations:
        s = n.stats
        live = monitor.rate_per_min(n, now)
        camera = s.camera_state.value if s else "-"
        rows.append(
            [
                n.line,
                n.name,
                n.status,
                camera,
                _fmt(s and s.fps, ".1f"),
                f"{live:.0f}",
                _fmt(s and s.yield_pct, ".1f"),
                _fmt(s and s.passed),
                _fmt(s and s.failed),
                _fmt(s and s.review),
                _fmt(s and s.inference_ms_p50, ".1f"),
                _fmt(s and s.inference_ms_p95, ".1f"),
                _fmt(s and s.outbox_depth),
                (s.model_version if s and s.model_version else "-"),
                (f"{n.last_event.type.value} {_age(now - n.last_event_at)} ago" if n.last_event else "-"),
            ]
        )
        bad = n.status == Presence.OFFLINE or (s is not None and not s.camera_state.inspecting)
        colors.append(_RED if bad else (_YELLOW if (s and s.paused) or n.status != Presence.ONLINE else _GREEN))
    header = [
        "LINE",
        "STATION",
        "STATUS",
        "CAMERA",
        "FPS",
        "RES/MIN",
        "YIELD%",
        "PASS",
        "FAIL",
        "REVIEW",
        "P50ms",
        "P95ms",
        "OUTBOX",
        "MODEL",
        "LAST EVENT",
    ]
    out += _table(header, rows, colors, color) if stations else ["(no station seen yet)"]

    if controllers:
        rows, colors = [], []
        for n in controllers:
            st = n.state
            reasons = ",".join(f"{k}:{v}" for k, v in sorted(st.reject_reasons.items())) or "-"
            offline = [name for name, status in st.stations.items() if status != Presence.ONLINE]
            rows.append(
                [
                    n.line,
                    n.name,
                    n.status,
                    st.state.value + (f" ({st.stop_reason})" if st.stop_reason else ""),
                    str(st.parts),
                    str(st.accepted),
                    str(st.rejected),
                    reasons,
                    _fmt(st.yield_pct, ".1f"),
                    str(st.pending),
                    str(st.duplicates),
                    str(st.late),
                    ",".join(offline) or "-",
                ]
            )
            colors.append(_RED if st.state == LineState.STOPPED or n.status == Presence.OFFLINE else _GREEN)
        out += [
            "",
            *_table(
                [
                    "LINE",
                    "CONTROLLER",
                    "STATUS",
                    "STATE",
                    "PARTS",
                    "ACCEPT",
                    "REJECT",
                    "REASONS",
                    "YIELD%",
                    "PENDING",
                    "DUP",
                    "LATE",
                    "NOT ONLINE",
                ],
                rows,
                colors,
                color,
            ),
        ]
    forged = [n for n in nodes if n.sender_mismatches]
    if forged:
        out += [""] + [
            f"{n.line}/{n.name}: {n.sender_mismatches} result(s) naming another station or line (not counted)"
            for n in forged
        ]
    if monitor.bad_messages:
        out += ["", f"{monitor.bad_messages} message(s) could not be parsed"]
    return "\n".join(out) + "\n"
