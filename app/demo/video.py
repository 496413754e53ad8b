"""A camera's view of an indexing conveyor: parts move in, stop under the camera, move out.

The demo needs a video of parts passing a camera whose ground truth is known. Each part gets one slot:
it slides in during the first 30 %, dwells centered under the camera for 40 % (where the controller's
trigger lands), and slides out. The region of interest is the part's rectangle during the dwell, so the
station crops exactly the tile a model was trained on.

Example:
    >>> import tempfile, os
    >>> video = render_line_video(os.path.join(tempfile.mkdtemp(), "line.avi"), ["good", "crack"], seed=0)
    >>> [s.label for s in video.slots], video.roi.width
    (['good', 'crack'], 128)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from inspector.preprocess import Roi
from inspector.synth import DEFAULT_STYLE, DefectStyle, render

MOVE_IN, DWELL = 0.3, 0.4


def part_id(number: int, prefix: str = "P") -> str:
    """The id the line controller gives its n-th generated part (``P000001``)."""
    return f"{prefix}{number:06d}"


@dataclass(frozen=True)
class PartSlot:
    part_id: str
    label: str
    start_s: float  # slot start, seconds from the first frame
    trigger_s: float  # middle of the dwell: when the line's sensor would fire
    end_s: float


@dataclass
class LineVideo:
    path: str
    fps: float
    frame_size: Tuple[int, int]
    roi: Roi
    slots: List[PartSlot] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.slots[-1].end_s if self.slots else 0.0

    def save_truth(self, path: str | os.PathLike) -> None:
        data = {
            "video": self.path,
            "fps": self.fps,
            "frame_size": list(self.frame_size),
            "roi": self.roi.model_dump(),
            "parts": [asdict(s) for s in self.slots],
        }
        Path(path).write_text(json.dumps(data, indent=1))


def _belt(width: int, height: int, offset: int) -> np.ndarray:
    """Dark belt with cross ribs that move with the parts, so the background is never static."""
    belt = np.full((height, width, 3), 38, np.uint8)
    for x in range((offset % 24) - 24, width, 24):
        cv2.line(belt, (x, 0), (x, height - 1), (48, 48, 48), 2)
    cv2.rectangle(belt, (0, 0), (width - 1, 6), (90, 90, 90), -1)
    cv2.rectangle(belt, (0, height - 7), (width - 1, height - 1), (90, 90, 90), -1)
    return belt


def frame_with_part(part_bgr: np.ndarray, x: int, frame_size: Tuple[int, int]) -> np.ndarray:
    """One camera frame: the belt, with the part's left edge at ``x`` (may be partly outside)."""
    width, height = frame_size
    ph, pw = part_bgr.shape[:2]
    cy = (height - ph) // 2
    frame = _belt(width, height, x)
    x0, x1 = max(x, 0), min(x + pw, width)
    if x1 > x0:
        frame[cy : cy + ph, x0:x1] = part_bgr[:, x0 - x : x1 - x]
    return frame


def render_line_video(
    path: str | os.PathLike,
    labels: Sequence[str],
    seed: int = 0,
    fps: float = 10.0,
    slot_s: float = 1.0,
    frame_size: Tuple[int, int] = (320, 240),
    part_size: Tuple[int, int] = (128, 128),
    images: Optional[Sequence[np.ndarray]] = None,
    style: DefectStyle = DEFAULT_STYLE,
) -> LineVideo:
    """Write an MJPG AVI with one part per slot; returns the slots (ground truth) and the ROI.

    Parts are synthetic renders of ``labels``, or, when ``images`` (RGB) are given, those images resized to
    ``part_size`` with ``labels`` as their ground truth (held-out images of a user's own dataset). ``style``
    renders the defects as the training set did.
    """
    width, height = frame_size
    pw, ph = part_size
    cx, cy = (width - pw) // 2, (height - ph) // 2
    roi = Roi(x=cx, y=cy, width=pw, height=ph)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write video {path}: OpenCV has no MJPG writer here")
    rng = np.random.default_rng([seed, 4242])
    frames_per_slot = max(3, int(round(slot_s * fps)))
    video = LineVideo(str(path), fps, frame_size, roi)
    frame_index = 0
    try:
        for i, label in enumerate(labels):
            if images is None:
                part_bgr = render(rng, label, part_size, style=style)[:, :, ::-1]
            else:
                part_bgr = cv2.resize(images[i], part_size, interpolation=cv2.INTER_AREA)[:, :, ::-1]
            start = frame_index / fps
            video.slots.append(
                PartSlot(
                    part_id(i + 1), label, start, start + slot_s * (MOVE_IN + DWELL / 2), start + frames_per_slot / fps
                )
            )
            for k in range(frames_per_slot):
                phase = k / frames_per_slot
                if phase < MOVE_IN:
                    x = int(round(-pw + (cx + pw) * phase / MOVE_IN))
                elif phase < MOVE_IN + DWELL:
                    x = cx
                else:
                    x = int(round(cx + (width - cx) * (phase - MOVE_IN - DWELL) / (1 - MOVE_IN - DWELL)))
                writer.write(frame_with_part(part_bgr, x, frame_size))
                frame_index += 1
    finally:
        writer.release()
    return video
