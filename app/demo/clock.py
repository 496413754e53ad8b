"""Per-stage wall and CPU time of the demo, with the load average.

On a shared machine the wall time of a stage is inflated by other processes; the CPU time this process
and its finished children spent is not (much), so both are recorded: a stage that is CPU-bound on a quiet
2-core machine takes about its CPU time divided by the cores it keeps busy, a real-time stage (the belt)
takes its wall time whatever the load.
"""

from __future__ import annotations

import os
import resource
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have been waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def load_average() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


class StageClock:
    def __init__(self) -> None:
        self.wall: Dict[str, float] = {}
        self.cpu: Dict[str, float] = {}
        self.load: Dict[str, List[float]] = {"start": load_average()}
        self._started = time.monotonic()
        self._cpu_started = cpu_seconds()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        wall, cpu = time.monotonic(), cpu_seconds()
        try:
            yield
        finally:
            self.wall[name] = time.monotonic() - wall
            self.cpu[name] = cpu_seconds() - cpu

    def finish(self) -> None:
        self.wall["total"] = time.monotonic() - self._started
        self.cpu["total"] = cpu_seconds() - self._cpu_started
        self.load["end"] = load_average()

    def to_dict(self) -> dict:
        return {
            "wall_s": {k: round(v, 1) for k, v in self.wall.items()},
            "cpu_s": {k: round(v, 1) for k, v in self.cpu.items()},
            "load_average": self.load,
        }
