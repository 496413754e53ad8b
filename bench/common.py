"""What every benchmark shares: where results go, the machine context recorded with them, and statistics.

Every result file is one JSON object with a ``context`` (host, CPU, load average at start, versions, git
commit, quick or full) and the benchmark's own ``results``. The machine this runs on is often shared, so
the load average at the start is part of every file: compare numbers measured in the same file (ratios,
side-by-side medians), not across files.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORK = REPO / "bench" / "work"  # models, videos and broker files; not committed (bench/.gitignore)
DATASET = REPO.parent / "shared" / "datasets" / "magnetic_tile"


def repo_relative(value: Any) -> Any:
    """``value`` with every absolute path string made relative to the checkout (``../shared/...``), so a
    result file records where things are in the repository, not this machine's folder layout."""
    if isinstance(value, dict):
        return {k: repo_relative(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [repo_relative(v) for v in value]
    if isinstance(value, (str, Path)) and os.path.isabs(value):
        return os.path.relpath(value, REPO)
    return value


def results_dir(quick: bool, override: Optional[str] = None) -> Path:
    """bench/results/quick or bench/results/full, unless ``--out`` names another folder."""
    path = Path(override) if override else RESULTS / ("quick" if quick else "full")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _version(module: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def context(quick: bool, **extra) -> dict:
    """The machine and software a result was measured on; call it at the start of a benchmark."""
    return {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in (
                "ai-edge-litert",
                "tensorflow-cpu",
                "tensorflow",
                "keras",
                "paho-mqtt",
                "opencv-python-headless",
                "numpy",
            )
        },
        "git_commit": _git_commit(),
        **extra,
    }


def write_result(out_dir: Path, name: str, ctx: dict, results, started: float) -> Path:
    """Write ``<out_dir>/<name>.json`` (context, results, wall time); returns the path."""
    ctx = dict(
        ctx, wall_s=round(time.monotonic() - started, 1), load_average_at_end=[round(v, 2) for v in os.getloadavg()]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "context": ctx, "results": results}, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return path


def summary(values_s: Iterable[float], scale: float = 1000.0) -> Dict[str, float]:
    """Median, p90, p99, mean, min and count of durations in seconds, reported in ms (``scale``)."""
    arr = np.asarray(list(values_s), dtype=np.float64) * scale
    if arr.size == 0:
        return {"n": 0}
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "n": int(arr.size),
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(arr.mean()), 3),
        "min": round(float(arr.min()), 3),
    }


def median(values: Sequence[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def log(text: str) -> None:
    """Progress lines on stderr (stdout of worker processes carries their JSON)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class ProcSample:
    """CPU seconds (user + system) and current/peak resident memory of a process, from /proc."""

    at: float
    cpu_s: float
    rss_mb: float
    hwm_mb: float


def sample_process(pid: int) -> Optional[ProcSample]:
    """Read /proc/<pid>/stat and status (Linux); None when the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15 of stat)
        rss = hwm = 0.0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
        return ProcSample(time.monotonic(), cpu, round(rss, 1), round(hwm, 1))
    except (OSError, IndexError, ValueError):
        return None


def cpu_percent(first: ProcSample, last: ProcSample) -> float:
    """Average CPU use between two samples, in percent of one core (200 = both cores of this machine)."""
    return round(100.0 * (last.cpu_s - first.cpu_s) / max(last.at - first.at, 1e-9), 1)


def child_env() -> dict:
    """Environment for worker processes: the repository importable, TensorFlow quiet, logs unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_worker(module: str, args: List[str], timeout: float) -> dict:
    """Run ``python -m <module> <args>`` and parse the JSON object it prints last on stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        cwd=str(REPO),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{module} printed no JSON: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    return json.loads(lines[-1])
