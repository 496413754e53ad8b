"""Part-by-part accept/reject logic of the line controller, without any I/O (the clock is passed in).

Fail-safe rules, in order:

* a result id seen before from the same station is dropped (MQTT QoS 1 is at-least-once; a redelivered fail
  must not count twice); ids are kept per station, so one station cannot shadow another's result;
* a triggered part is rejected as soon as one station fails it (or sends it to review, by policy), and
  accepted only when every expected station has passed it;
* a triggered part still missing results at its deadline is rejected (``timeout``): a crashed station or a
  lost message must never let an uninspected part through;
* while a station is offline, parts waiting for it and new parts for it are rejected (``station_offline``);
* a part id announced again (while it waits, after its decision, or after an early result decided it) is
  rejected (``duplicate_part_id``), and so is the part of that id still waiting: results cannot tell two
  parts of one id apart, and every announced part must end in a decision;
* a result that names no tracked part (continuous mode, a trigger from elsewhere, or results that the broker
  queued while the controller was down) is decided on its own.

Example:
    >>> from inspector.protocol.payloads import Result
    >>> t = PartTracker(deadline_s=2.0)
    >>> t.expect("P1", ["cam1"], now=0.0)
    []
    >>> [d.reason for d in t.expire(now=5.0)]
    ['timeout']
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from typing import Dict, Iterable, List, Optional, Set

from inspector.protocol.enums import Action, DecisionReason, Verdict
from inspector.protocol.payloads import Decision, Result


class Outcome(str, Enum):
    """What a result did to the tracker."""

    DECIDED = "decided"  # it completed (or failed) its part: a decision was made
    PARTIAL = "partial"  # its part still waits for other stations
    DUPLICATE = "duplicate"  # its id was seen before: dropped
    LATE = "late"  # its part was already decided


class RecentSet:
    """Bounded set of the most recent keys (insertion order); memory stays flat on a line that runs for months."""

    def __init__(self, size: int):
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> bool:
        """Add ``key``; False when it was already there."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return True

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)


@dataclass
class _Pending:
    part_id: str
    stations: Set[str]
    triggered_at: float
    deadline: float
    results: Dict[str, Result] = field(default_factory=dict)


class PartTracker:
    """Decides parts from results; not thread-safe (the controller holds a lock around it).

    ``result.station`` is taken as the sender: the caller passes only results whose payload names the
    station and line of the topic they came on (:meth:`Result.names_other_sender`).
    """

    def __init__(self, deadline_s: float, review_action: Action | str = Action.REJECT, dedup_size: int = 100_000):
        try:
            self.review_action = Action(review_action)
        except ValueError:
            raise ValueError(f"review_action must be accept or reject, got {review_action!r}") from None
        self.deadline_s = deadline_s
        self._seen_results = RecentSet(dedup_size)
        self._decided_parts = RecentSet(dedup_size)
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self.offline: Set[str] = set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def expect(self, part_id: str, stations: Iterable[str], now: float) -> List[Decision]:
        """Track an announced part; returns the decisions it causes at once (none: it now waits for results).

        Those are a reject when one of its stations is offline, or ``duplicate_part_id`` rejects when the id
        is already known: one for this announcement, and one for the part of that id still waiting, if any.
        """
        stations = set(stations)
        if not stations:
            raise ValueError("a triggered part needs at least one station")
        if part_id in self._pending or part_id in self._decided_parts:
            waiting = self._pending.get(part_id)
            decisions = (
                []
                if waiting is None
                else [
                    self._finish(
                        waiting,
                        now,
                        Action.REJECT,
                        DecisionReason.DUPLICATE_PART_ID,
                        sorted(waiting.stations - set(waiting.results)),
                    )
                ]
            )
            return decisions + [self.refuse(part_id, DecisionReason.DUPLICATE_PART_ID, stations)]
        offline = sorted(stations & self.offline)
        if offline:
            return [self.refuse(part_id, DecisionReason.STATION_OFFLINE, offline)]
        self._pending[part_id] = _Pending(part_id, stations, now, now + self.deadline_s)
        return []

    def refuse(self, part_id: str, reason: DecisionReason, missing: Iterable[str]) -> Decision:
        """Reject a part that cannot be inspected at all (its station is offline, the line is stopped)."""
        self._decided_parts.add(part_id)
        return self._decision(part_id, Action.REJECT, reason, {}, missing=sorted(missing))

    def on_result(self, result: Result, now: float) -> tuple[Outcome, Optional[Decision]]:
        if not self._seen_results.add(f"{result.station}/{result.id}"):
            return Outcome.DUPLICATE, None
        part_id = result.part_id
        pending = self._pending.get(part_id) if part_id is not None else None
        if pending is None:
            if part_id is not None and part_id in self._decided_parts:
                return Outcome.LATE, None
            if part_id is not None:
                self._decided_parts.add(part_id)
            return Outcome.DECIDED, self._decide_results(part_id, {result.station: result}, now, None)
        pending.results[result.station] = result
        if self._verdict_rejects(result.verdict) or pending.stations <= set(pending.results):
            return Outcome.DECIDED, self._finish(pending, now)
        return Outcome.PARTIAL, None

    def expire(self, now: float) -> List[Decision]:
        """Reject every part whose deadline has passed."""
        decisions = []
        for part_id in [p for p, item in self._pending.items() if item.deadline <= now]:
            item = self._pending[part_id]
            missing = sorted(item.stations - set(item.results))
            decisions.append(self._finish(item, now, Action.REJECT, DecisionReason.TIMEOUT, missing))
        return decisions

    def set_online(self, station: str, online: bool, now: float) -> List[Decision]:
        """Record a station's status; going offline rejects the parts still waiting for it."""
        if online:
            self.offline.discard(station)
            return []
        self.offline.add(station)
        decisions = []
        for item in [p for p in self._pending.values() if station in p.stations and station not in p.results]:
            missing = sorted(item.stations - set(item.results))
            decisions.append(self._finish(item, now, Action.REJECT, DecisionReason.STATION_OFFLINE, missing))
        return decisions

    def reject_all_pending(self, reason: DecisionReason, now: float) -> List[Decision]:
        return [
            self._finish(item, now, Action.REJECT, reason, sorted(item.stations - set(item.results)))
            for item in list(self._pending.values())
        ]

    def _verdict_rejects(self, verdict: Verdict) -> bool:
        return verdict == Verdict.FAIL or (verdict == Verdict.REVIEW and self.review_action == Action.REJECT)

    def _finish(
        self,
        item: _Pending,
        now: float,
        action: Optional[Action] = None,
        reason: Optional[DecisionReason] = None,
        missing: Optional[List[str]] = None,
    ) -> Decision:
        del self._pending[item.part_id]
        self._decided_parts.add(item.part_id)
        if action is None or reason is None:
            return self._decide_results(item.part_id, item.results, now, item.triggered_at)
        return self._decision(item.part_id, action, reason, item.results, missing or [], wait_s=now - item.triggered_at)

    def _decide_results(
        self, part_id: Optional[str], results: Dict[str, Result], now: float, triggered_at: Optional[float]
    ) -> Decision:
        verdicts = [r.verdict for r in results.values()]
        rejecting = [v for v in verdicts if self._verdict_rejects(v)]
        if rejecting:
            reason = DecisionReason.FAIL if Verdict.FAIL in rejecting else DecisionReason.REVIEW
            action = Action.REJECT
        else:
            reason = DecisionReason.REVIEW if Verdict.REVIEW in verdicts else DecisionReason.PASS
            action = Action.ACCEPT
        wait_s = None if triggered_at is None else now - triggered_at
        return self._decision(part_id, action, reason, results, [], wait_s=wait_s)

    @staticmethod
    def _decision(
        part_id: Optional[str],
        action: Action,
        reason: DecisionReason,
        results: Dict[str, Result],
        missing: List[str],
        wait_s: Optional[float] = None,
    ) -> Decision:
        return Decision(
            ts=time.time(),
            part_id=part_id,
            action=action,
            reason=reason.value,
            verdicts={s: r.verdict for s, r in results.items()},
            result_ids=[r.id for r in results.values()],
            missing=missing,
            wait_ms=None if wait_s is None else round(wait_s * 1000.0, 1),
        )
