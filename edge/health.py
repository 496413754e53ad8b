"""Camera health on the line: the commissioning focus/exposure checks, every N frames, reported on change.

The reference comes from the station config (``health.reference``) or else from the bundle manifest's
``camera`` field (measured at calibration). A lens that gets dirty, a lamp that fails or an iris that was
touched changes these measures long before anyone notices bad verdicts, so the station reports it.

Only transitions are reported (``camera_check`` when a problem appears or changes, ``camera_ok`` when it
clears), so a dirty lens produces one event, not one per check.

Example:
    >>> import numpy as np
    >>> from inspector.camera import CameraReference
    >>> frame = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    >>> health = CameraHealth(CameraReference.from_frame(frame), every_n=1)
    >>> health.check(np.zeros_like(frame)).problems[0].split(":")[0]
    'out_of_focus'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from inspector.camera import CameraMetrics, CameraReference, measure


@dataclass
class HealthReport:
    """Outcome of one check; ``changed`` says whether an event should be published."""

    problems: List[str]
    metrics: CameraMetrics
    changed: bool

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class CameraHealth:
    """Measures one frame in ``every_n`` against ``reference``."""

    reference: CameraReference
    every_n: int = 100
    _frames: int = 0
    _last_codes: Optional[List[str]] = field(default=None)

    def due(self) -> bool:
        """Count a frame; True when this one should be measured."""
        self._frames += 1
        return self._frames % self.every_n == 0 or self._frames == 1

    def check(self, frame: np.ndarray) -> HealthReport:
        metrics = measure(frame, self.reference.roi)
        problems = self.reference.check(metrics)
        codes = sorted(p.split(":")[0] for p in problems)
        changed = codes != (self._last_codes if self._last_codes is not None else [])
        self._last_codes = codes
        return HealthReport(problems, metrics, changed)
