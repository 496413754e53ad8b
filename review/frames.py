"""Archived frames read back from one or several station archives, and the page's filters over them.

An archive (``edge/archive.py``) holds ``<root>/<predicted class>/<verdict>/<YYYY-MM-DD>/<name>.<png|jpg>``
with a JSON sidecar ``<name>.json``: the station's full :class:`~inspector.protocol.payloads.Result`. The
sidecar is the index: a frame is an image with a sidecar that parses as a result. Anything else (a
half-written file, an image whose sidecar the disk budget deleted, a heatmap overlay) is not a frame.
A sidecar may name a heatmap overlay image (``heatmap``: ``.<name>.heatmap.png`` beside the frame, hidden so
it never trains) and carry ``where`` (the peak and box of the defect evidence); both are shown when present
and never required.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from pydantic import Field, ValidationError

from inspector.config import StrictModel
from inspector.imageio import IMAGE_SUFFIXES
from inspector.protocol.enums import Verdict
from inspector.protocol.payloads import Result

log = logging.getLogger(__name__)

# Sidecar keys that may name the heatmap overlay (a file name beside the sidecar, or a path).
OVERLAY_KEYS = ("heatmap", "overlay")


@dataclass(frozen=True)
class ArchivedFrame:
    """One archived part: the image, its sidecar and the station's result."""

    key: str
    image: Path
    sidecar: Path
    archive: Path
    result: Result
    overlay: Optional[Path]
    where: Optional[Dict[str, Any]] = None

    @property
    def day(self) -> str:
        return self.result.captured_at[:10]


def frame_key(image: Path) -> str:
    """A short stable id for URLs; it names a frame the server found, never a path a client chose."""
    return hashlib.sha256(str(image.resolve()).encode()).hexdigest()[:16]


def _overlay(raw: Dict[str, Any], sidecar: Path) -> Optional[Path]:
    for value in (raw.get(k) for k in OVERLAY_KEYS):
        if isinstance(value, str) and value:
            path = Path(value)
            for option in (path, sidecar.parent / path, sidecar.parent / path.name):
                if option.suffix.lower() in IMAGE_SUFFIXES and option.is_file():
                    return option
    return None


def _image_for(sidecar: Path) -> Optional[Path]:
    for suffix in IMAGE_SUFFIXES:
        path = sidecar.with_suffix(suffix)
        if path.is_file():
            return path
    return None


def scan_archive(root: Path) -> Tuple[List[ArchivedFrame], int]:
    """The frames under ``root`` and how many sidecars were not usable (logged, never fatal)."""
    frames: List[ArchivedFrame] = []
    unusable = 0
    for sidecar in sorted(root.rglob("*.json")):
        if sidecar.name.startswith("."):
            continue
        image = _image_for(sidecar)
        if image is None:
            continue  # the budget deleted the image first, or it is some other JSON file
        try:
            raw = json.loads(sidecar.read_text())
            result = Result.model_validate(raw)
        except (OSError, ValueError, ValidationError) as exc:
            unusable += 1
            log.warning("%s: not a station result sidecar (%s)", sidecar, str(exc).splitlines()[0])
            continue
        where = raw.get("where") if isinstance(raw.get("where"), dict) else None
        frames.append(ArchivedFrame(frame_key(image), image, sidecar, root, result, _overlay(raw, sidecar), where))
    return frames, unusable


def scan_archives(roots: Iterable[Path]) -> Tuple[List[ArchivedFrame], int]:
    """All frames of all archives, newest first (the operator reviews today's rejects first); a folder given
    twice, or inside another one given, lists its frames once."""
    frames: Dict[str, ArchivedFrame] = {}
    unusable = 0
    for root in roots:
        found, bad = scan_archive(root)
        frames.update((f.key, f) for f in found if f.key not in frames)
        unusable += bad
    return sorted(frames.values(), key=lambda f: (-f.result.capture_ts, f.key)), unusable


class Show(str, Enum):
    """Which frames by labeling state; the value is the URL's, the text the page's."""

    TODO = "todo"
    LABELED = "labeled"
    ALL = "all"

    @property
    def text(self) -> str:
        return {"todo": "not labeled", "labeled": "labeled", "all": "all"}[self.value]


class FrameFilter(StrictModel):
    """What the operator narrows the queue to; every field empty means everything."""

    verdict: Optional[Verdict] = None
    score_min: Optional[float] = Field(None, ge=0.0, le=1.0, description="Lowest defect score shown")
    score_max: Optional[float] = Field(None, ge=0.0, le=1.0, description="Highest defect score shown")
    top_class: Optional[str] = Field(None, description="The model's top class")
    station: Optional[str] = None
    date_from: Optional[date] = Field(None, description="First capture day (UTC), inclusive")
    date_to: Optional[date] = Field(None, description="Last capture day (UTC), inclusive")
    show: Show = Field(Show.TODO, description="Unlabeled, labeled or all frames")

    @classmethod
    def from_query(cls, params: Dict[str, str]) -> FrameFilter:
        """From URL query parameters: empty fields are unset, unknown ones are ignored (links carry more)."""
        return cls.model_validate({k: v for k, v in params.items() if k in cls.model_fields and v != ""})

    def query(self) -> Dict[str, str]:
        """The filter as query parameters, for links and redirects that keep it."""
        return {k: str(v.value if isinstance(v, Enum) else v) for k, v in self.model_dump().items() if v is not None}

    def keeps(self, frame: ArchivedFrame, labeled: bool) -> bool:
        r = frame.result
        if self.show == Show.TODO and labeled or self.show == Show.LABELED and not labeled:
            return False
        if self.verdict is not None and r.verdict != self.verdict:
            return False
        if self.score_min is not None and r.defect_score < self.score_min:
            return False
        if self.score_max is not None and r.defect_score > self.score_max:
            return False
        if self.top_class and r.top_class != self.top_class:
            return False
        if self.station and r.station != self.station:
            return False
        if self.date_from is not None and frame.day < self.date_from.isoformat():
            return False
        return self.date_to is None or frame.day <= self.date_to.isoformat()
