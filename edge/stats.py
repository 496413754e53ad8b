"""Running counters of a station, turned into the periodic ``/stats`` message.

Inference latency is summarised as p50/p95 over the most recent inferences (a rolling window) rather
than since start, so a slowdown (thermal throttling, a second process on the board) shows up quickly.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Deque, Dict, List, Optional

import numpy as np

from inspector.protocol.enums import CameraState, Verdict
from inspector.protocol.payloads import Stats

LATENCY_WINDOW = 500


class StationStats:
    """Thread-safe counters; :meth:`snapshot` builds a :class:`~inspector.protocol.payloads.Stats`."""

    def __init__(self):
        self._lock = threading.Lock()
        self.started = time.time()
        self.inspected = 0
        self.verdicts: Dict[Verdict, int] = {v: 0 for v in Verdict}
        self.errors = 0
        self.error_reasons: Dict[str, int] = {}
        self.gated = 0
        self.gate_reasons: Dict[str, int] = {}
        self._latency: Deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._last_ts = time.monotonic()
        self._last_inspected = 0

    def record(self, verdict: Verdict, inference_ms: float) -> None:
        with self._lock:
            self.inspected += 1
            self.verdicts[verdict] += 1
            self._latency.append(inference_ms)

    def record_gate(self, codes: List[str]) -> None:
        """A frame the plausibility gate stopped, with its findings' codes."""
        with self._lock:
            self.gated += 1
            for code in codes:
                self.gate_reasons[code] = self.gate_reasons.get(code, 0) + 1

    def record_error(self, reason: str = "") -> None:
        """A frame that could not be inspected, and why (counted per reason for the end-of-run summary)."""
        with self._lock:
            self.errors += 1
            if reason:
                self.error_reasons[reason] = self.error_reasons.get(reason, 0) + 1

    def summary(self) -> str:
        """What the run did, for a person: parts, verdicts, gated frames and skipped frames with their reasons."""
        with self._lock:
            v = self.verdicts
            lines = [
                f"{self.inspected} part(s): {v[Verdict.PASS]} pass, {v[Verdict.FAIL]} fail, "
                f"{v[Verdict.REVIEW]} review; {self.gated} stopped by the plausibility gate; "
                f"{self.errors} frame(s) skipped"
            ]
            lines += [f"  gate {code}: {n}" for code, n in sorted(self.gate_reasons.items())]
            lines += [f"  skipped {n}: {reason}" for reason, n in sorted(self.error_reasons.items())]
            return "\n".join(lines)

    def snapshot(
        self,
        captured: int,
        dropped: int,
        outbox_depth: int,
        camera_state: CameraState,
        model_version: str,
        paused: bool,
    ) -> Stats:
        """Figures since start, plus frames/s since the previous snapshot."""
        with self._lock:
            now = time.monotonic()
            elapsed = max(now - self._last_ts, 1e-6)
            fps = (self.inspected - self._last_inspected) / elapsed
            self._last_ts, self._last_inspected = now, self.inspected
            p50: Optional[float] = None
            p95: Optional[float] = None
            if self._latency:
                p50, p95 = (round(float(v), 3) for v in np.percentile(np.fromiter(self._latency, float), [50, 95]))
            passed, failed, review = (self.verdicts[v] for v in (Verdict.PASS, Verdict.FAIL, Verdict.REVIEW))
            return Stats(
                ts=time.time(),
                uptime_s=round(time.time() - self.started, 3),
                fps=round(fps, 3),
                frames_captured=captured,
                frames_inspected=self.inspected,
                frames_dropped=dropped,
                inference_ms_p50=p50,
                inference_ms_p95=p95,
                passed=passed,
                failed=failed,
                review=review,
                gated=self.gated,
                gate_reasons=dict(self.gate_reasons),
                yield_pct=round(100.0 * passed / self.inspected, 3) if self.inspected else None,
                outbox_depth=outbox_depth,
                camera_state=camera_state,
                model_version=model_version,
                paused=paused,
            )
